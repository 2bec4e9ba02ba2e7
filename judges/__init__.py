"""Task judges: a protocol and a registry. A judge knows nothing of Prefect, MLflow or torch."""
from judges.base import Judge, get_judge, judge_names, register_judge
from judges import code as _code  # noqa: F401  (registers "code")
from judges import math as _math  # noqa: F401  (registers "math")
from judges import matching as _matching  # noqa: F401  (registers exact, contains, numeric, regex, choice)
from judges import qa as _qa  # noqa: F401  (registers "qa")

__all__ = ["Judge", "get_judge", "judge_names", "register_judge"]
