"""The root-cause guess of an incident, and the reasons given for it and for its pattern.

With parent-event links, the root is the member with no parent in the group that has the most
descendants in it (then the earliest); otherwise the member with the highest prior for the pattern
(e.g. a registry change, a security finding, a token-usage surge before a cost spike) plus an
earliness bonus. The priors and the pattern's effect domains also decide the other members' roles.
"""
from __future__ import annotations

from bisect import bisect_right

from operators.correlate.groups import UNSET, Group, GroupStats
from schemas.incidents import Signal

# Prior that a member of a domain is the root cause, per pattern (a change to the system is the
# classic cause; effects show up in performance and cost).
ROOT_PRIOR: dict[str, dict[str, float]] = {
    "security_incident": {"security": 1.0, "change": 0.7, "compliance": 0.5, "usage": 0.4, "performance": 0.2, "cost": 0.1},
    "compliance_cascade": {"compliance": 1.0, "change": 0.7, "security": 0.5, "usage": 0.3, "performance": 0.2, "cost": 0.1},
    "cost_impact": {"change": 1.0, "usage": 0.8, "performance": 0.4, "security": 0.4, "compliance": 0.3, "cost": 0.2},
    "performance_degradation": {"change": 1.0, "usage": 0.7, "security": 0.5, "performance": 0.4, "compliance": 0.3, "cost": 0.2},
    "generic": {},
}
EFFECT_DOMAINS: dict[str, frozenset[str]] = {
    "security_incident": frozenset({"performance", "cost", "usage", "compliance"}),
    "compliance_cascade": frozenset({"security", "cost", "performance", "usage"}),
    "cost_impact": frozenset({"cost"}),
    "performance_degradation": frozenset({"performance"}),
    "generic": frozenset(),
}
EARLINESS_BONUS = 0.3


def root_cause(g: Group, st: GroupStats, pattern: str) -> tuple[str, int]:
    """Root cause id, and (for a causal root) how many members descend from it, else -1.

    With parent_of edges: among members with no parent in the group that are a parent, the one
    with the most descendants in the group (then earliest, then largest id). Otherwise the
    highest prior for the pattern plus earliness bonus (ties: earliest, then largest id):
    within a domain that is its earliest member, so only one candidate per domain is scored."""
    if st.parent_of:
        if st.croot is UNSET:
            st.croot = causal_root(g.members, st.children)
        if st.croot is not None:
            return st.croot
    prior = ROOT_PRIOR.get(pattern, {})
    t0 = st.t_min
    span = max(st.t_max - t0, 1)
    best: tuple | None = None
    for d, ds in st.doms.items():
        t = ds[1]
        k = (prior.get(d, 0.0) + EARLINESS_BONUS * (1.0 - (t - t0) / span), -t, ds[2])
        if best is None or k > best:
            best = k
    return best[2], -1


def pattern_reasons(st: GroupStats, pattern: str) -> list[str]:
    """Why the group has this pattern: the signals that made it, in words."""
    doms = st.doms
    if pattern == "security_incident":
        others = sorted(d for d in doms if d != "security")
        return [f"security signal(s): {', '.join(sorted(st.what['security']))}"] + (
            [f"together with {', '.join(others)} signals"] if others else [])
    if pattern == "compliance_cascade":
        comp = doms["compliance"]
        later = sorted(d for d, ds in doms.items() if d not in ("compliance", "change") and ds[3] >= comp[1])
        reasons = [f"{comp[0]} compliance/policy signal(s)"]
        if later:
            reasons.append(f"followed by {', '.join(later)} signals")
        return reasons
    if pattern == "cost_impact":
        drivers = sorted(d for d in doms if d in ("usage", "performance", "change"))
        return ["cost signal(s)"] + ([f"with {', '.join(drivers)} signals"] if drivers else [])
    if pattern == "performance_degradation":
        return [f"performance signal(s): {', '.join(sorted(st.what['performance']))}"]
    return [f"domains: {', '.join(sorted(doms))}"]


def prior_reasons(members: list[Signal], best: Signal, dom: str, pattern: str) -> list[str]:
    """Why `best` (chosen by prior and earliness) is the root cause; members sorted by time."""
    prior = ROOT_PRIOR.get(pattern, {})
    reasons = []
    if prior:
        reasons.append(f"{dom} signals are the most likely cause in a {pattern.replace('_', ' ')} (prior {prior.get(dom, 0.0):.1f})")
    t0, bt = members[0].time_ms, best.time_ms
    times = [m.time_ms for m in members]
    first_later = bisect_right(times, bt)
    if bt == t0:
        reasons.append("earliest member of the incident")
    if first_later < len(times):
        lead_s = (times[first_later] - bt) // 1000
        reasons.append(f"precedes {len(times) - first_later} other member(s), the first by {lead_s} s")
    if t0 < bt:
        lag_s = (bt - t0) // 1000
        reasons.append(f"seen {lag_s} s after the first member (detection delays differ across sources)")
    what = best.metric or best.kind
    reasons.append(f"{best.source} {what}" + (f" on {best.asset}" if best.asset else ""))
    return reasons


def causal_root(members: dict[str, Signal], children: dict[str, list[str]]) -> tuple[str, int] | None:
    """Among members that are a parent and have no parent in the group: the one with the most
    descendants in the group (then earliest, then largest id), with that count; None if none."""
    has_parent = {b for a, kids in children.items() if a in members for b in kids}
    best: tuple | None = None
    for sid in children:
        if sid in members and sid not in has_parent:
            n = sum(1 for x in descendants(sid, children) if x in members)
            k = (n, -members[sid].time_ms, sid)
            if best is None or k > best:
                best = k
    return None if best is None else (best[2], best[0])


def descendants(root: str, children: dict[str, list[str]]) -> set[str]:
    """Every id reachable from root through parent_of edges (children: parent -> [child])."""
    seen: set[str] = set()
    stack = [root]
    while stack:
        for c in children.get(stack.pop(), ()):
            if c not in seen:
                seen.add(c)
                stack.append(c)
    return seen
