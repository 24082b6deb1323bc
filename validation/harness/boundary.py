"""The boundary experiment: each storage trained, buffer full, just inside ``planner fit``'s largest size that fits a
profile and just past it, each run confined to the profile's budget plus this host's runtime. The planner says fits /
does not fit; the confined run completes / is killed by the limit; the grid says whether they agree."""

from dataclasses import replace

from planner.defaults import SCAN_STEPS
from planner.errors import PlannerError
from planner.fit import max_buffer_size
from planner.footprint import footprint
from planner.profiles import DeviceProfile
from planner.table import render
from validation.harness.runconfig import RunConfig

# 5 % inside fit's largest size and 5 % past it: at 1x the slack is under one row, and a few MB the run measures
# itself with (the pool, its pagemap reads) decide the outcome (docs/validate.md, the boundary experiment)
FACTORS = (0.95, 1.05)
FILL_POOL = SCAN_STEPS  # real env transitions recorded once, then written in a loop until the buffer is full


def host_buffer_only(profile: DeviceProfile) -> bool:
    """Whether ``fit`` holds the buffer alone against the profile's host budget (no Python, or a discrete GPU).

    :param profile: the device profile
    """
    return profile.buffer_only or profile.gpu_budget() is not None


def largest_fitting(config: RunConfig, profile: DeviceProfile) -> int:
    """``planner fit``'s largest buffer size for ``config``'s storage row on ``profile``.

    :param config: the run (its storage, algorithm, env, m and b, ranges)
    :param profile: the device profile
    """
    return max_buffer_size(config.run_spec(), profile.budget().available, host_buffer_only(profile))


def predicted_fits(config: RunConfig, profile: DeviceProfile) -> bool:
    """``planner fit``'s verdict on ``config`` at its size: what host memory must hold against the budget.

    :param config: the run
    :param profile: the device profile
    """
    fp = footprint(config.run_spec())
    needed = fp.buffer_bytes if host_buffer_only(profile) else fp.total_bytes
    return needed <= profile.budget().available


def boundary_configs(bases: "tuple[RunConfig, ...]", profile: DeviceProfile,
                     factors: "tuple[float, ...]" = FACTORS) -> "tuple[RunConfig, ...]":
    """Per storage, one run at each of ``factors`` times its largest fitting size, not traced, the buffer written full
    before training from :data:`FILL_POOL` real transitions (``fill_pool``); a factor above 1 is at least one
    transition past the largest size.

    :param bases: one configuration per storage (their sizes are replaced)
    :param profile: the device profile
    :param factors: multiples of the largest size that fits
    """
    out = []
    for base in bases:
        largest = largest_fitting(base, profile)
        if largest < 2:
            raise PlannerError(f"{base.name}: not even 2 transitions fit {profile.name}'s budget", "profile")
        for factor in factors:
            if factor <= 0:
                raise ValueError(f"factors must be positive, got {factor:g}")
            size = max(2, round(largest * factor))
            size = largest + 1 if factor > 1 and size <= largest else size
            out.append(replace(base, buffer_size=size, fill=True, fill_pool=FILL_POOL, memray=False,
                               tag=f"x{factor:g}"))
    return tuple(out)


def observed(run: dict) -> str:
    """What a confined run did: "completed", "killed" (by the limit), or its status otherwise."""
    status = run.get("status", "not started")
    return {"complete": "completed", "killed-by-limit": "killed"}.get(status, status)


def grid(report: dict, configs: "tuple[RunConfig, ...]", profile: DeviceProfile) -> "list[dict]":
    """One row per run: storage, size, predicted verdict, observed outcome, the group's peak and limit, agreement.

    :param report: the validation's report (its ``runs``)
    :param configs: the runs, as configured
    :param profile: the device profile
    """
    rows = []
    for config in configs:
        run = report["runs"].get(config.name, {})
        group = run.get("confinement") or {}
        fits, seen = predicted_fits(config, profile), observed(run)
        agree = (fits and seen == "completed") or (not fits and seen == "killed")
        rows.append({"run": config.name, "storage": config.storage, "buffer_size": config.buffer_size,
                     "predicted": "fits" if fits else "does not fit", "observed": seen,
                     "peak_bytes": group.get("peak_bytes"), "limit_bytes": group.get("limit_bytes"), "agree": agree})
    return rows


def grid_table(rows: "list[dict]") -> str:
    """The grid as the terminal shows it (MB = 10^6 B)."""
    def mb(value: "int | None") -> str:
        return "-" if value is None else f"{value / 1e6:,.1f}"

    table = [[r["storage"], f"{r['buffer_size']:,}", r["predicted"], r["observed"], mb(r["peak_bytes"]),
              mb(r["limit_bytes"]), "-" if not (r["peak_bytes"] and r["limit_bytes"]) else
              f"{100 * r['peak_bytes'] / r['limit_bytes']:.1f}%", "yes" if r["agree"] else "NO"] for r in rows]
    return render(table, ["storage", "buffer size", "planner", "confined run", "group peak (MB)", "limit (MB)",
                          "peak / limit", "agree"])
