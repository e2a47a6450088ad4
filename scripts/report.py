"""Reports rebuilt from the study's files: the README's results block (and, later, the HTML page).

Every number comes from metrics/ (<run>_eval.json, comparison.json, <run>_localization.json and
.csv) and weights/<run>/config.json; a missing file gives a line naming the command that makes
it, not an error.

    python scripts/report.py --readme                       # rewrite README.md between the markers
    python scripts/report.py --readme --readme-path X.md    # another file with the same markers
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pneumocam import cli, paths
from pneumocam.errors import PneumocamError
from pneumocam.readme_results import END_MARKER, START_MARKER, write_readme_results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    outputs = parser.add_argument_group("outputs (at least one)")
    outputs.add_argument("--readme", action="store_true",
                         help=f"rewrite the results block between {START_MARKER} and "
                              f"{END_MARKER} of --readme-path")
    parser.add_argument("--readme-path", type=Path, default=paths.repo_root() / "README.md",
                        help="the markdown file to update (default: the repository's README.md)")
    args = parser.parse_args(argv)
    # Each output is one flag, so the HTML report can join as --html without changing these.
    if not args.readme:
        parser.error("choose an output: --readme")
    try:
        written = write_readme_results(args.readme_path)
    except PneumocamError as exc:
        return cli.report_error(exc)
    print(f"wrote the results block of {written} from {paths.metrics_dir()} and "
          f"{paths.weights_dir()}")
    return 0


if __name__ == "__main__":
    cli.run_main(main)
