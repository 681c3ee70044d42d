"""reid: attention-based multi-branch person re-identification, from YAML configs."""
__version__ = "0.1.0"
