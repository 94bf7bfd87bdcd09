"""threatscope simulate stage: seeded logs of several organisations with known campaigns.

    from threatscope.simulate import simulate, write_bench_log
    folder = simulate("sim", seed=7, scale=1.0)   # orgs.csv, <org_id>/..., ground_truth.json
    write_bench_log("bench.log", 2_000_000, "w3c")

See ``world`` for the organisations, campaigns and ground truth, ``attacks`` for the requests.
"""

from threatscope.simulate.bench import write_bench_log
from threatscope.simulate.world import simulate

__all__ = ["simulate", "write_bench_log"]
