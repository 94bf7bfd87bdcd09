"""reader: block sizes and batches of whole lines."""

from __future__ import annotations

from threatscope.ingest import reader

MiB = 1 << 20


def test_block_sizes_ramp_up_then_halve_towards_the_end():
    sizes, left = [], 300 * MiB
    for k in range(100):
        if not left:
            break
        sizes.append(reader._block_size(k, left, 32 * MiB))
        left -= min(sizes[-1], left)
    assert sizes[:4] == [4 * MiB, 8 * MiB, 16 * MiB, 32 * MiB]
    assert sum(sizes) >= 300 * MiB and max(sizes) == 32 * MiB
    tail = sizes[-4:]
    assert tail == sorted(tail, reverse=True) and tail[-1] <= 4 * MiB  # smaller at the end
    # unknown size (a compressed stream): the ramp only; a small block setting wins
    assert [reader._block_size(k, None, 32 * MiB) for k in range(5)][-1] == 32 * MiB
    assert reader._block_size(0, 300 * MiB, 64 << 10) == 64 << 10


def test_batches_cover_every_line_once_in_order(tmp_path):
    lines = [f"line {i} " + "x" * (i % 50) for i in range(300_000)]  # 10 MiB
    path = tmp_path / "a.log"
    path.write_text("\n".join(lines) + "\n")
    with reader.open_source(str(path)) as src:
        batches = list(reader.iter_batches(src))  # 4 MiB, then what is left halved: 3 batches
    got = [(n, s) for b in batches for n, s in zip(b.table.column("n").to_pylist(),
                                                  b.table.column("line").to_pylist(),
                                                  strict=True)]
    assert got == list(enumerate(lines, 1)) and len(batches) == 3
    assert sum(b.lines for b in batches) == len(lines)
