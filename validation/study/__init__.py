"""``planner study``: does learning survive the storage that fits? A grid of real training runs (envs x
algorithms x storages x seeds), run on local processes or Ray, and a summary after the paper's Figures 3-4
and Table I (docs/study.md)."""
