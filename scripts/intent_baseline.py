#!/usr/bin/env python3
"""Kontor's intent model side by side with a scikit-learn baseline (issue 15, "Accuracy and speed").

For each data set (banking77 and massive_de, each a train.csv and a test.csv) this trains on
train.csv and measures on test.csv:

* the baseline: TF-IDF features (word 1-2-grams plus character 2-5-grams) and a logistic
  regression, from scikit-learn;
* Kontor's model, when --kontor names a `kontor` binary: `kontor assist train` and
  `kontor assist eval --json`;

and prints one Markdown table (or, with --json, one JSON object): accuracy, macro-F1, the
training time in seconds and the prediction time in milliseconds per message.

The baseline runs in its own virtualenv, $HOME/.cache/kontor-baseline-venv, with the packages
pinned in scripts/intent_baseline_requirements.txt. The script creates it on first use, reinstalls
it when that file has changed, and re-executes itself inside it, so a plain `python3` (3.11) is all
it needs:

    python3 scripts/intent_baseline.py [--data DIR] [--kontor PATH_TO_KONTOR_BINARY] [--json]

Exit codes: 0 on success, 1 when a command (pip, kontor) fails, 2 when a data set, a column or
the kontor binary is missing.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

SCRIPTS_DIR = Path(__file__).resolve().parent
REPO_DIR = SCRIPTS_DIR.parent
REQUIREMENTS = SCRIPTS_DIR / "intent_baseline_requirements.txt"
VENV_DIR = Path.home() / ".cache" / "kontor-baseline-venv"
# The copy of the requirements file that the venv was last installed from.
VENV_STAMP = VENV_DIR / "intent_baseline_requirements.txt"
# Set before re-executing inside the venv, so that a venv that is somehow not taken as one
# (sys.prefix not matching) ends in an error rather than in an endless chain of re-executions.
REEXEC_MARKER = "KONTOR_BASELINE_REEXECUTED"

# The data sets: directory name under --data and the CSV column holding the label. The text
# is in the column `text` in both.
DATASETS = [
    ("banking77", "category"),
    ("massive_de", "intent"),
]
TEXT_COLUMN = "text"


class Failure(Exception):
    """An error that ends the run with a message and the given exit code."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def log(message: str) -> None:
    """Progress goes to stderr, so that stdout holds only the table (or the JSON)."""
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# The virtualenv
# --------------------------------------------------------------------------------------------


def venv_python() -> Path:
    return VENV_DIR / "bin" / "python"


def running_in_venv() -> bool:
    return os.path.realpath(sys.prefix) == os.path.realpath(VENV_DIR)


def run_quietly(command: list[str], what: str) -> None:
    """Runs a setup command with its output on stderr; a failure becomes a Failure."""
    result = subprocess.run(command, stdout=sys.stderr, stderr=sys.stderr)
    if result.returncode != 0:
        raise Failure(f"{what} failed (exit code {result.returncode}): {' '.join(command)}")


def ensure_venv() -> None:
    """Makes sure the venv exists with the current requirements, then runs this script in it.

    Returns only when already running inside the venv; otherwise it replaces this process with
    the venv's Python running the same script with the same arguments.
    """
    if not running_in_venv():
        if os.environ.get(REEXEC_MARKER):
            raise Failure(
                f"re-executed with {venv_python()} but sys.prefix is {sys.prefix}, not {VENV_DIR}; "
                f"remove {VENV_DIR} and try again"
            )
        if not venv_python().exists():
            log(f"Creating the virtualenv {VENV_DIR} ...")
            VENV_DIR.parent.mkdir(parents=True, exist_ok=True)
            # --clear: start afresh if an earlier attempt left a half-made directory.
            run_quietly([sys.executable, "-m", "venv", "--clear", str(VENV_DIR)], "creating the virtualenv")

    # (Re)install when the requirements differ from those the venv was installed from. This is
    # checked inside the venv too, in case the script was started with the venv's Python.
    wanted = REQUIREMENTS.read_bytes()
    installed = VENV_STAMP.read_bytes() if VENV_STAMP.exists() else None
    if wanted != installed:
        log(f"Installing {REQUIREMENTS.name} into {VENV_DIR} ...")
        VENV_STAMP.unlink(missing_ok=True)  # a failed install must be retried next time
        run_quietly(
            [str(venv_python()), "-m", "pip", "install", "--disable-pip-version-check", "--requirement",
             str(REQUIREMENTS)],
            "pip install",
        )
        shutil.copyfile(REQUIREMENTS, VENV_STAMP)

    if not running_in_venv():
        os.environ[REEXEC_MARKER] = "1"
        python = str(venv_python())
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(python, [python, str(Path(__file__).resolve()), *sys.argv[1:]])


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def read_labelled_csv(path: Path, label_column: str) -> tuple[list[str], list[str]]:
    """Reads (texts, labels) from a CSV file with a header line.

    Reads the file the way `kontor assist` does, so that both models see the same examples:
    header names and fields are trimmed, rows with an empty text or label are skipped, and a
    row with the wrong number of fields is an error.
    """
    texts: list[str] = []
    labels: list[str] = []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        for column in (TEXT_COLUMN, label_column):
            if column not in header:
                raise Failure(f"{path}: no column {column!r} (columns: {', '.join(header)})", 2)
        t, l = header.index(TEXT_COLUMN), header.index(label_column)
        for line, row in enumerate(reader, start=2):
            if len(row) != len(header):
                raise Failure(f"{path} row {line}: {len(row)} fields, the header has {len(header)}")
            text, label = row[t].strip(), row[l].strip()
            if text and label:
                texts.append(text)
                labels.append(label)
    if not texts:
        raise Failure(f"{path}: no labelled rows", 2)
    return texts, labels


def dataset_files(data_dir: Path, name: str) -> tuple[Path, Path]:
    train, test = data_dir / name / "train.csv", data_dir / name / "test.csv"
    for path in (train, test):
        if not path.is_file():
            raise Failure(f"data set {name!r} is missing: no file {path}", 2)
    return train, test


# --------------------------------------------------------------------------------------------
# The two models
# --------------------------------------------------------------------------------------------


@dataclass
class Result:
    dataset: str
    model: str
    accuracy: float
    macro_f1: float
    train_seconds: float
    ms_per_message: float
    n_train: int
    n_test: int


def macro_f1_over_gold_labels(gold: list[str], predicted: list[str]) -> float:
    """Macro-F1 averaged over the labels that occur in the test set.

    That is how `kontor assist eval` computes it; scikit-learn's default would also average over
    labels that are only ever predicted, never gold. (banking77 and massive_de have every label in
    their test sets, so the two agree there, but the definition should be the same anyway.)
    """
    from sklearn.metrics import f1_score

    return float(f1_score(gold, predicted, labels=sorted(set(gold)), average="macro", zero_division=0))


# One line for the output; make_baseline() says it in full.
BASELINE_DESCRIPTION = (
    "TF-IDF of word 1-2-grams + TF-IDF of char_wb 2-5-grams (sublinear tf, min_df=1), "
    "LogisticRegression(C=10, max_iter=2000)"
)


def make_baseline():
    """The baseline: a strong, standard text classifier, not a tuned one.

    Features: the union (side by side, each block L2-normalised on its own) of
      * TF-IDF of word unigrams and bigrams, sublinear term frequency (1 + log tf), min_df=1;
      * TF-IDF of character 2- to 5-grams taken within word boundaries (analyzer "char_wb",
        which pads each word with spaces), sublinear term frequency, min_df=1;
    both with scikit-learn's default lower-casing and tokenisation.
    Classifier: multinomial logistic regression (lbfgs), L2-regularised with C=10 (weak
    regularisation, which suits these sparse, high-dimensional features), max_iter=2000.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, Pipeline

    features = FeatureUnion(
        [
            ("words", TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=1)),
            ("chars", TfidfVectorizer(sublinear_tf=True, analyzer="char_wb", ngram_range=(2, 5), min_df=1)),
        ]
    )
    return Pipeline([("features", features), ("classifier", LogisticRegression(max_iter=2000, C=10))])


def run_baseline(name: str, train_csv: Path, test_csv: Path, label_column: str) -> tuple[Result, float]:
    """Trains and evaluates the baseline. Returns the result and the batch ms/message."""
    import numpy as np
    from sklearn.metrics import accuracy_score

    train_texts, train_labels = read_labelled_csv(train_csv, label_column)
    test_texts, test_labels = read_labelled_csv(test_csv, label_column)

    model = make_baseline()
    started = time.perf_counter()
    model.fit(train_texts, train_labels)
    # Keep the weights in column-major order. Prediction multiplies the sparse features by
    # coef_.T; with coef_ row-major that transpose is not C-contiguous and scipy copies the whole
    # matrix (labels x features, ~40 MB on massive_de) on every call, which made one-message
    # prediction ~15 times slower. The predictions are unchanged.
    classifier = model.named_steps["classifier"]
    classifier.coef_ = np.asfortranarray(classifier.coef_)
    train_seconds = time.perf_counter() - started

    # ms/message as `kontor assist eval` measures it: one message at a time, as an assistant
    # sees them. These are the predictions that are scored.
    started = time.perf_counter()
    predicted = [model.predict([text])[0] for text in test_texts]
    ms_per_message = (time.perf_counter() - started) * 1000 / len(test_texts)

    # For reference (JSON only): the whole test set in one call, which amortises scikit-learn's
    # per-call overhead. The predictions are the same.
    started = time.perf_counter()
    model.predict(test_texts)
    batch_ms_per_message = (time.perf_counter() - started) * 1000 / len(test_texts)

    result = Result(
        dataset=name,
        model="baseline",
        accuracy=float(accuracy_score(test_labels, predicted)),
        macro_f1=macro_f1_over_gold_labels(test_labels, predicted),
        train_seconds=train_seconds,
        ms_per_message=ms_per_message,
        n_train=len(train_texts),
        n_test=len(test_texts),
    )
    return result, batch_ms_per_message


def run_command(command: list[str], cwd: Path) -> str:
    """Runs a kontor command, returns its stdout; a failure becomes a Failure with its output."""
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    except OSError as e:
        raise Failure(f"cannot run {command[0]}: {e}") from e
    if result.returncode != 0:
        output = (result.stderr.strip() or result.stdout.strip() or "(no output)")
        raise Failure(f"command failed (exit code {result.returncode}): {' '.join(command)}\n{output}")
    return result.stdout


def run_kontor(kontor: Path, name: str, train_csv: Path, test_csv: Path, label_column: str) -> Result:
    """Trains and evaluates Kontor's model with `kontor assist`, in a temporary directory.

    The training time is measured around the whole `kontor assist train` process (start-up,
    reading the CSV, training and writing the model).
    """
    with tempfile.TemporaryDirectory(prefix=f"kontor-baseline-{name}-") as tmp:
        workdir = Path(tmp)
        model = workdir / "model.bin"
        # Run in the temporary directory with it as the data directory too, so that no
        # kontor.toml of the caller's working directory and no existing data are involved.
        common = ["--data-dir", str(workdir), "--text-column", TEXT_COLUMN, "--label-column", label_column]
        train = [str(kontor), "assist", "train", "--csv", str(train_csv), "--out", str(model), *common]
        started = time.perf_counter()
        log(run_command(train, workdir).strip())
        train_seconds = time.perf_counter() - started

        evaluate = [str(kontor), "assist", "eval", "--model", str(model), "--csv", str(test_csv), "--json", *common]
        output = run_command(evaluate, workdir)
    try:
        figures = json.loads(output)
        accuracy, macro_f1 = float(figures["accuracy"]), float(figures["macro_f1"])
        ms_per_message, n = float(figures["ms_per_message"]), int(figures["n"])
    except (ValueError, KeyError, TypeError) as e:
        raise Failure(f"unexpected output of `kontor assist eval --json` ({e}): {output.strip()[:500]}") from e
    return Result(
        dataset=name,
        model="kontor",
        accuracy=accuracy,
        macro_f1=macro_f1,
        train_seconds=train_seconds,
        ms_per_message=ms_per_message,
        n_train=len(read_labelled_csv(train_csv, label_column)[0]),
        n_test=n,
    )


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------

MODEL_NAMES = {
    "kontor": "Kontor",
    "baseline": "TF-IDF + LogReg (scikit-learn)",
}


def markdown_table(results: list[Result]) -> str:
    lines = [
        "| data set | model | accuracy | macro-F1 | training s | ms/message |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r.dataset} | {MODEL_NAMES[r.model]} | {r.accuracy:.4f} | {r.macro_f1:.4f} "
            f"| {r.train_seconds:.1f} | {r.ms_per_message:.3f} |"
        )
    return "\n".join(lines)


def package_versions() -> dict[str, str]:
    from importlib.metadata import version

    versions = {"python": ".".join(map(str, sys.version_info[:3]))}
    for package in ("scikit-learn", "numpy", "scipy", "joblib", "threadpoolctl"):
        versions[package] = version(package)
    return versions


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Accuracy, macro-F1 and speed of Kontor's intent model beside a scikit-learn "
        "TF-IDF + logistic regression baseline, on banking77 and massive_de (train -> test)."
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=REPO_DIR.parent / "shared" / "data" / "intents",
        help="directory holding banking77/ and massive_de/ (default: <repo>/../shared/data/intents)",
    )
    parser.add_argument("--kontor", type=Path, help="the kontor binary; without it only the baseline runs")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a Markdown table")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    try:
        # Check the inputs before the (possibly slow) venv set-up.
        data_dir = args.data.resolve()
        files = {name: dataset_files(data_dir, name) for name, _ in DATASETS}
        kontor = None
        if args.kontor is not None:
            kontor = args.kontor.absolute()
            if not (kontor.is_file() and os.access(kontor, os.X_OK)):
                raise Failure(f"--kontor {args.kontor}: no executable file there", 2)

        ensure_venv()

        results: list[Result] = []
        batch_ms: dict[str, float] = {}
        for name, label_column in DATASETS:
            train_csv, test_csv = files[name]
            if kontor is not None:
                log(f"{name}: Kontor ...")
                results.append(run_kontor(kontor, name, train_csv, test_csv, label_column))
            log(f"{name}: baseline ...")
            result, batch_ms[name] = run_baseline(name, train_csv, test_csv, label_column)
            results.append(result)
    except Failure as e:
        print(f"intent_baseline: error: {e}", file=sys.stderr)
        return e.code

    if args.json:
        report = {
            "data": str(data_dir),
            "kontor": str(kontor) if kontor is not None else None,
            "baseline": BASELINE_DESCRIPTION,
            "versions": package_versions(),
            "results": [
                {**asdict(r), **({"batch_ms_per_message": batch_ms[r.dataset]} if r.model == "baseline" else {})}
                for r in results
            ],
        }
        print(json.dumps(report, indent=2))
    else:
        print(markdown_table(results))
        versions = package_versions()
        print()
        print(
            f"Baseline: {BASELINE_DESCRIPTION}; "
            f"scikit-learn {versions['scikit-learn']}, numpy {versions['numpy']}, scipy {versions['scipy']}, "
            f"Python {versions['python']}. ms/message: one message at a time for both models"
            + (f"; Kontor binary: {kontor}" if kontor is not None else "")
            + "."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
