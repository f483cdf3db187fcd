"""What the toolkit shows as pictures and pages: attention strips, the evaluation report, training plots."""
