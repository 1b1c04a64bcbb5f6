"""kairos.features: the feature pipeline shared by training and inference. Not built yet: issues #5 and #6.

One implementation computes features both in batch (training) and incrementally tick by tick or bar
by bar (serving), with a documented schema whose hash the model card records, so no
training/serving skew can creep in.
"""
