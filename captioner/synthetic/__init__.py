"""The built-in synthetic world: scenes of coloured shapes with known ground truth, the image
dataset and videos made of them, and the scorers that check captions against that truth.

It is the demo and the test bed that lets everything run on a fresh offline machine; nothing
outside this package imports it (a data config names its dataset and scorers).
"""
