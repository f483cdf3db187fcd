"""Video tagging: frames -> shots -> keyframe captions -> segments and tags -> exports."""
