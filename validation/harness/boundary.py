"""The boundary experiment: each storage trained, buffer full, at ``planner fit``'s largest size that fits a profile and
just past the largest the device's memory holds, each run confined to the device's memory for training (``fit``'s
budget and its safety margin) plus this host's runtime. The planner says fits / does not fit; the confined run
completes / is killed by the limit; the grid says whether they agree."""

from dataclasses import replace

from planner.defaults import SCAN_STEPS
from planner.errors import PlannerError
from planner.fit import max_buffer_size
from planner.footprint import footprint
from planner.profiles import DeviceProfile
from planner.table import render
from validation.harness.runconfig import RunConfig

# 5 % of the device's largest buffer past it: well above the ~10 MB the host runtime in the limit is measured to
# (docs/validate.md, the boundary experiment)
PAST = 1.05
FILL_POOL = SCAN_STEPS  # real env transitions recorded once, then written in a loop until the buffer is full


def host_buffer_only(profile: DeviceProfile) -> bool:
    """Whether ``fit`` holds the buffer alone against the profile's host budget (no Python, or a discrete GPU).

    :param profile: the device profile
    """
    return profile.buffer_only or profile.gpu_budget() is not None


def largest_fitting(config: RunConfig, profile: DeviceProfile, *, margin: bool = False) -> int:
    """``planner fit``'s largest buffer size for ``config``'s storage row on ``profile``; with ``margin``, the largest
    the device's memory holds, the safety margin spent too.

    :param config: the run (its storage, algorithm, env, m and b, ranges)
    :param profile: the device profile
    :param margin: count the profile's safety margin as memory for training, as the confined limit does
    """
    budget = profile.budget()
    return max_buffer_size(config.run_spec(), budget.available + (budget.margin if margin else 0),
                           host_buffer_only(profile))


def predicted_fits(config: RunConfig, profile: DeviceProfile) -> bool:
    """``planner fit``'s verdict on ``config`` at its size: what host memory must hold against the budget.

    :param config: the run
    :param profile: the device profile
    """
    fp = footprint(config.run_spec())
    needed = fp.buffer_bytes if host_buffer_only(profile) else fp.total_bytes
    return needed <= profile.budget().available


def boundary_configs(bases: "tuple[RunConfig, ...]", profile: DeviceProfile, *,
                     past: float = PAST) -> "tuple[RunConfig, ...]":
    """Per storage, one run at ``fit``'s largest size that fits ``profile`` and one at ``past`` times the largest the
    device's memory holds (its safety margin spent too; at least one transition past ``fit``'s largest), not traced,
    the buffer written full before training from :data:`FILL_POOL` real transitions (``fill_pool``).

    :param bases: one configuration per storage (their sizes are replaced)
    :param profile: the device profile
    :param past: how far past the device's largest buffer the second run is, a multiple above 1
    """
    if not past > 1:
        raise ValueError(f"past must be above 1, got {past:g}")
    out = []
    for base in bases:
        largest = largest_fitting(base, profile)
        if largest < 2:
            raise PlannerError(f"{base.name}: not even 2 transitions fit {profile.name}'s budget", "profile")
        beyond = max(largest + 1, round(largest_fitting(base, profile, margin=True) * past))
        for size, tag in ((largest, "fit"), (beyond, "past")):
            out.append(replace(base, buffer_size=size, fill=True, fill_pool=FILL_POOL, memray=False, tag=tag))
    return tuple(out)


def observed(run: dict) -> str:
    """What a confined run did: "completed", "killed" (by the limit), or its status otherwise."""
    status = run.get("status", "not started")
    return {"complete": "completed", "killed-by-limit": "killed"}.get(status, status)


def grid(report: dict, configs: "tuple[RunConfig, ...]", profile: DeviceProfile) -> "list[dict]":
    """One row per run: storage, size, predicted verdict, observed outcome, the group's peak and limit, how much of the
    profile's safety margin the run spent (its peak past the limit less the margin: negative, it stayed inside
    ``fit``'s budget), agreement.

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
        peak, limit = group.get("peak_bytes"), group.get("limit_bytes")
        spent = None if peak is None or limit is None or seen != "completed" else peak - (limit - profile.margin)
        rows.append({"run": config.name, "storage": config.storage, "buffer_size": config.buffer_size,
                     "predicted": "fits" if fits else "does not fit", "observed": seen,
                     "peak_bytes": peak, "limit_bytes": limit, "margin_bytes": profile.margin,
                     "margin_spent_bytes": spent, "agree": agree})
    return rows


def grid_table(rows: "list[dict]") -> str:
    """The grid as the terminal shows it (MB = 10^6 B)."""
    def mb(value: "int | None", sign: str = "") -> str:
        return "-" if value is None else f"{value / 1e6:{sign},.1f}"

    def spent(row: dict) -> str:
        return "-" if row["margin_spent_bytes"] is None else \
            f"{mb(row['margin_spent_bytes'], '+')} of {mb(row['margin_bytes'])}"

    table = [[r["storage"], f"{r['buffer_size']:,}", r["predicted"], r["observed"], mb(r["peak_bytes"]),
              mb(r["limit_bytes"]), "-" if not (r["peak_bytes"] and r["limit_bytes"]) else
              f"{100 * r['peak_bytes'] / r['limit_bytes']:.1f}%", spent(r), "yes" if r["agree"] else "NO"]
             for r in rows]
    return render(table, ["storage", "buffer size", "planner", "confined run", "group peak (MB)", "limit (MB)",
                          "peak / limit", "margin spent (MB)", "agree"])
