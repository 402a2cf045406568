"""Constants of the built-in task, shared by the model build, the data writer and the tests."""

from __future__ import annotations

PROMPT = "Which digit is shown? Answer with one digit."
ANSWERS = tuple(str(d) for d in range(10))
DEFAULT_SEVERITY = 3  # of a named shift, when none is given
IMAGE_SIDE = 56  # 8 px digits upscaled x7: 16 patches of 14 px, merged into 4 visual tokens

# One fixed split of sklearn's 1797 digits, independent of any model seed, so that every model, data
# stream and benchmark agrees on which digits are held out. Pretraining sees `train` only; the held-out
# rest is cut into a disjoint adaptation stream (unlabeled at adaptation time) and an evaluation set.
SPLIT_SEED = 0
TRAIN_SIZE = 900
ADAPT_SIZE = 400  # the remaining 497 are the evaluation set
