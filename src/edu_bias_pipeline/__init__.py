"""edu-bias-pipeline: validate, split, DPO-align and evaluate education-bias preference pairs."""

__version__ = "0.1.0"
