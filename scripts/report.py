"""The study's reports, rebuilt from its files: the offline HTML page and the README's results.

Every number comes from metrics/ (<run>_eval.json, comparison.json, <run>_localization.json and
.csv, the saved maps), weights/*/config.json and data/Processed/stats.json; a missing file gives
a line naming the command that makes it, not an error.

    python scripts/report.py                                # images/index.html + images/report/
    python scripts/report.py --readme                       # only rewrite README.md's results block
    python scripts/report.py --html --readme                # both
    python scripts/report.py --readme --readme-path X.md    # another file with the same markers
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pneumocam import cli, paths
from pneumocam.errors import PneumocamError
from pneumocam.readme_results import END_MARKER, START_MARKER, write_readme_results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="With no output flag, --html.")
    outputs = parser.add_argument_group("outputs (default: --html)")
    outputs.add_argument("--html", action="store_true",
                         help="write the offline page images/index.html and the CAM gallery "
                              "images/report/ (opens from file://, no server)")
    outputs.add_argument("--readme", action="store_true",
                         help=f"rewrite the results block between {START_MARKER} and "
                              f"{END_MARKER} of --readme-path")
    parser.add_argument("--readme-path", type=Path, default=paths.repo_root() / "README.md",
                        help="the markdown file to update (default: the repository's README.md)")
    args = parser.parse_args(argv)
    html = args.html or not args.readme
    try:
        if args.readme:
            written = write_readme_results(args.readme_path)
            print(f"wrote the results block of {written} from {paths.metrics_dir()} and "
                  f"{paths.weights_dir()}")
        if html:
            from pneumocam.report_site import write_site  # draws thumbnails: only when asked

            page = write_site()
            print(f"wrote the study's report; open it in a browser: {page}")
    except PneumocamError as exc:
        return cli.report_error(exc)
    return 0


if __name__ == "__main__":
    cli.run_main(main)
