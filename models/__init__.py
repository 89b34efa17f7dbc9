"""Models (Load + train): the seed models by name and the timed training loop.

- `models.build(name)`: a seed model (`models.zoo`); `models.build_for(spec, shape,
  classes)`: a seed model or a user's ``module:callable``, built for the data;
- `models.trainer`: the custom loop that times waiting for input and each step;
- ``python -m models.train``: train one variant and print a per-epoch table.
"""

from models.zoo import MODELS, build, build_for

__all__ = ["MODELS", "build", "build_for"]
