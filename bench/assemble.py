"""Assemble docs/benchmarks.md from the per-area sections each benchmark writes."""

from __future__ import annotations

from pathlib import Path

ORDER = ("data", "crypto", "protocol", "generalise", "sisa", "unlearning", "deploy")
HEADER = """# Benchmarks

Measured on this project's development machine (2 CPU cores shared with other jobs, 24 GiB,
no GPU) unless a section says otherwise. Each section names the command that reproduces
it; figures are medians of several runs where the section says so. Regenerate all with
`make bench` (slow) or one area with its script under bench/.
"""


def main() -> None:
    sections = Path("docs/benchmarks")
    parts = [HEADER]
    names = [n for n in ORDER if (sections / f"{n}.md").exists()]
    names += sorted(p.stem for p in sections.glob("*.md") if p.stem not in ORDER)
    for name in names:
        parts.append((sections / f"{name}.md").read_text().strip() + "\n")
    Path("docs/benchmarks.md").write_text("\n".join(parts))
    print(f"docs/benchmarks.md: {', '.join(names)}")


if __name__ == "__main__":
    main()
