"""The built-in task: recognise scikit-learn's 8x8 digits, upscaled to 56 px, clean or under a named shift."""
