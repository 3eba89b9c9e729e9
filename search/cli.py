"""The ``mmkd-search`` command: argument parsing and the verbs search, best and studies.

Everything a user typed or supplied is checked here, before torch, ray, mlflow or pyts
are imported; a mistake is one line on stderr and exit code 2, with nothing created.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from mmkd.data import BUNDLED, DEFAULT_VAL_SHARE, PROTOCOLS, DataError, SplitSettings, dataset_name
from mmkd.methods import METHODS
from search.presets import PRESETS
from search.sqlite import existing_database_problem, sqlite_file

PROG = "mmkd-search"
TEACHERS = ("sig", "gaf", "pi")
PRUNERS = ("halving", "median", "hyperband", "none")


class UsageError(Exception):
    """A mistake in what the user typed or supplied; exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a mistake as one line instead of usage plus message."""

    def error(self, message):
        raise UsageError(message)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


# How long a --ray-address may take to accept a connection.
RAY_CONNECT_SECONDS = 5.0
# Seeds reach numpy's and torch's generators plus per-trial offsets; this keeps all in range.
MAX_SEED = 2**31 - 1


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be from 0 to {MAX_SEED}, got {value}")
    return value


def _share(text: str) -> float:
    value = _positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _method_help() -> str:
    width = max(map(len, METHODS))
    lines = [f"  {name:<{width}}  {info.title}" for name, info in METHODS.items()]
    return "methods:\n" + "\n".join(lines)


def _add_data_options(parser: _Parser) -> None:
    data = parser.add_argument_group("data (see the README's 'Data sets')")
    data.add_argument(
        "--dataset",
        default="basicmotions",
        metavar="NAME|PATH",
        help=f"bundled ({', '.join(BUNDLED)}; default basicmotions), "
        "synthetic[:n=N,length=L,channels=C,subjects=K,noise=F,seed=S], or a file or folder: "
        "UEA/UCR .ts/.arff/.txt/.tsv, .npz, PAMAP2 .dat, UCI-HAR folder, WISDM .txt",
    )
    data.add_argument(
        "--window",
        type=_positive_int,
        metavar="N",
        help="window length of raw recordings in samples (PAMAP2 100 at 33 Hz, WISDM 200)",
    )
    data.add_argument(
        "--step",
        type=_positive_int,
        metavar="N",
        help="samples between window starts (PAMAP2 22, WISDM 100)",
    )
    data.add_argument(
        "--split",
        default="stratified",
        choices=PROTOCOLS,
        help="stratified (default) or loso: leave one subject out",
    )
    data.add_argument("--test-subject", metavar="S", help="the test subject of --split loso")
    data.add_argument(
        "--val-subject", metavar="S", help="validation subject of --split loso (else a share)"
    )
    data.add_argument(
        "--val-share",
        type=_share,
        metavar="F",
        help=f"validation share of the training windows (default {DEFAULT_VAL_SHARE})",
    )


def _search_parser() -> _Parser:
    parser = _Parser(
        prog=PROG,
        description=(
            "Tune a multi-modal knowledge-distillation method with Optuna trials run in "
            "parallel by Ray and tracked in MLflow. Other verbs: "
            f"'{PROG} best --method M', '{PROG} studies'."
        ),
        epilog=_method_help()
        + "\n\npresets:\n"
        + "\n".join(f"  {p.name:<6} {p.description}" for p in PRESETS.values()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--method", required=True, metavar="M", help="KD method (see below)")
    _add_data_options(parser)
    parser.add_argument("--preset", default="quick", choices=tuple(PRESETS))
    parser.add_argument("--trials", type=_positive_int, help="total trials of the study")
    parser.add_argument("--epochs", type=_positive_int, help="student epochs per trial")
    parser.add_argument("--workers", type=_positive_int, default=2, help="parallel Ray workers")
    parser.add_argument("--patience", type=_positive_int, help="stop after P epochs without gain")
    parser.add_argument("--pruner", default="halving", choices=PRUNERS)
    parser.add_argument("--seed", type=_seed, default=0)
    parser.add_argument(
        "--teachers", default="sig,gaf,pi", help="teachers taking part (default sig,gaf,pi)"
    )
    parser.add_argument("--teacher-epochs", type=_positive_int)
    parser.add_argument("--space", metavar="FILE", help="space file replacing the method's own")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="fix one parameter"
    )
    parser.add_argument(
        "--study", type=_study_name, help="study name (default: derived from the settings)"
    )
    parser.add_argument("--storage", default="sqlite:///optuna.db", help="Optuna storage URL")
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db", help="MLflow URI")
    parser.add_argument("--cache-dir", default=".mmkd-cache", help="modality/teacher cache")
    parser.add_argument("--cpus-per-trial", type=_positive_float, help="CPUs per worker")
    parser.add_argument("--ray-address", help="join this running Ray cluster")
    return parser


def _best_parser() -> _Parser:
    parser = _Parser(
        prog=f"{PROG} best",
        description="Print the best COMPLETE trial of a study, read from MLflow.",
    )
    parser.add_argument("--method", required=True, metavar="M")
    _add_data_options(parser)
    parser.add_argument("--preset", default="quick", choices=tuple(PRESETS))
    parser.add_argument("--teachers", default="sig,gaf,pi")
    parser.add_argument("--seed", type=_seed, default=0)
    parser.add_argument(
        "--study", type=_study_name, help="study name (default: derived as for the search)"
    )
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--output", metavar="FILE", help="also write the result to FILE")
    parser.add_argument("--format", default="yaml", choices=("yaml", "json"))
    return parser


def _studies_parser() -> _Parser:
    parser = _Parser(prog=f"{PROG} studies", description="List studies with trial counts.")
    parser.add_argument("--storage", default="sqlite:///optuna.db")
    return parser


def _check_method(name: str) -> None:
    if name not in METHODS:
        raise UsageError(f"--method: unknown method {name!r}; choose one of {', '.join(METHODS)}")


def _check_data(args) -> tuple[str, SplitSettings]:
    """The data set's name and the split settings; the source is checked, not loaded."""
    if args.split == "loso" and args.test_subject is None:
        raise UsageError("--split loso needs --test-subject S, the subject held out for testing")
    for option, value in (
        ("--test-subject", args.test_subject),
        ("--val-subject", args.val_subject),
    ):
        if value is not None and args.split != "loso":
            raise UsageError(f"{option} needs --split loso")
    if args.val_subject is not None and args.val_share is not None:
        raise UsageError("--val-subject and --val-share exclude each other; give one")
    if args.val_subject is not None and args.val_subject == args.test_subject:
        raise UsageError("--val-subject must differ from --test-subject")
    try:
        name = dataset_name(args.dataset, args.window, args.step)
    except DataError as error:
        raise UsageError(f"--dataset: {error}") from None
    split = SplitSettings(
        protocol=args.split,
        val_share=args.val_share or DEFAULT_VAL_SHARE,
        test_subject=args.test_subject,
        val_subject=args.val_subject,
    )
    return name, split


def _study_words(args) -> list[str]:
    """The options that name the study, as typed, where they differ from the defaults."""
    words = [] if args.dataset == "basicmotions" else ["--dataset", args.dataset]
    words += [] if args.split == "stratified" else ["--split", args.split]
    words += [] if args.preset == "quick" else ["--preset", args.preset]
    words += [] if args.teachers == "sig,gaf,pi" else ["--teachers", args.teachers]
    words += [] if args.seed == 0 else ["--seed", str(args.seed)]
    for option in ("window", "step", "test_subject", "val_subject", "val_share"):
        if getattr(args, option) is not None:
            words += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
    return words


def _check_teachers(text: str, method: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [n for n in names if n not in TEACHERS]
    if not names or unknown or len(set(names)) != len(names):
        raise UsageError(
            f"--teachers: give distinct names from {','.join(TEACHERS)}, got {text!r}"
        )
    missing = [t for t in METHODS[method].teachers if t not in names]
    if missing:
        raise UsageError(
            f"--teachers: method {method} needs the {' and '.join(missing)} teacher(s); "
            f"add {','.join(missing)} to --teachers"
        )
    return tuple(t for t in TEACHERS if t in names)


def _check_heads(space: dict, preset) -> None:
    """Attention heads must divide the student's feature width, which the preset sets."""
    entry = space.get("heads")
    if entry is None:
        return
    width = 64 * preset.student_width
    if "value" in entry:
        candidates = [entry["value"]]
    elif "choices" in entry:
        candidates = entry["choices"]
    else:
        candidates = range(entry["low"], entry["high"] + 1, entry.get("step", 1))
    for heads in candidates:
        if width % heads:
            raise UsageError(
                f"heads: {heads} does not divide the student's feature width {width}; "
                "use 1, 2, 4, 8, 16, ..."
            )


def _check_url(option: str, url: str, writable: bool = True) -> None:
    """A sqlite URL's folder must exist, and for a search (``writable``) the folder and the
    database's files must be writable; other schemes are passed on."""
    if "://" not in url:
        raise UsageError(f"{option}: {url!r} is not a URL; e.g. sqlite:///optuna.db")
    path = sqlite_file(url)
    if url.startswith("sqlite:") and (path is None or str(path) in (":memory:", ".")):
        raise UsageError(f"{option}: {url!r} is no file that workers can share; name a file")
    if path is None:
        return
    folder = (path.parent if path.is_absolute() else Path.cwd() / path.parent).resolve()
    if not folder.is_dir():
        raise UsageError(f"{option}: folder {folder} does not exist")
    if writable and not os.access(folder, os.W_OK):
        raise UsageError(f"{option}: folder {folder} is not writable")

    # Read-only, before anything is created: a wrong file is refused as it is found.
    table = "studies" if option == "--storage" else "experiments"
    problem = existing_database_problem(folder / path.name, table)
    if problem:
        raise UsageError(f"{option}: cannot open {url}: {problem}")
    if writable:
        # sqlite's write-ahead log keeps two files beside the database.
        for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
            file = folder / name
            if file.exists() and not os.access(file, os.W_OK):
                raise UsageError(f"{option}: {file} is read-only; a search writes to it")


def _check_cache_dir(folder: str) -> None:
    """The cache folder, or the nearest folder above it that exists, must be writable."""
    path = Path(folder).resolve()
    existing = path
    while not existing.exists():
        existing = existing.parent
    if existing == path and not path.is_dir():
        raise UsageError(f"--cache-dir: {path} is not a folder")
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise UsageError(f"--cache-dir: {existing} is not a writable folder")


def _check_ray_address(address: str) -> None:
    """A ``HOST:PORT`` (or ``ray://HOST:PORT``) address must answer within seconds: Ray's own
    connection attempts would otherwise retry for minutes. ``auto`` is left to Ray."""
    import socket

    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--ray-address: {address!r} is not HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host, int(port)), timeout=RAY_CONNECT_SECONDS).close()
    except OSError as error:
        raise UsageError(
            f"--ray-address: nothing answers at {host}:{port} ({error.strerror or error}); "
            "start Ray there, or leave the option out to start Ray here"
        ) from None


def _study_name(text: str) -> str:
    """A study name: MLflow filters and file names take it as it is, so no quotes."""
    if not text or any(c in text for c in "'\"\\") or not text.isprintable():
        raise argparse.ArgumentTypeError(
            f"{text!r}: use letters, digits and punctuation other than quotes and backslashes"
        )
    return text


def _default_study(method, dataset, preset, teachers, split, seed) -> str:
    return f"{method}-{dataset}-{preset}-{'+'.join(teachers)}-{split.label()}-seed{seed}"


def _search(argv: list[str]) -> int:
    from search.space import SpaceError, load_space

    args = _search_parser().parse_args(argv)
    _check_method(args.method)
    dataset, split = _check_data(args)
    teachers = _check_teachers(args.teachers, args.method)
    _check_url("--storage", args.storage)
    _check_url("--tracking-uri", args.tracking_uri)
    _check_cache_dir(args.cache_dir)
    if args.ray_address:
        _check_ray_address(args.ray_address)
    if not os.access(Path.cwd(), os.W_OK):
        raise UsageError(f"the working folder {Path.cwd()} is not writable; run from another")
    artifacts = Path.cwd() / "mlruns"
    if artifacts.exists() and not (artifacts.is_dir() and os.access(artifacts, os.W_OK)):
        raise UsageError(f"{artifacts} (MLflow's artifacts) is not a writable folder")
    preset = PRESETS[args.preset]
    try:
        space = load_space(args.method, args.space, preset.fixed, args.set)
    except SpaceError as error:
        raise UsageError(str(error)) from None
    _check_heads(space, preset)
    if args.cpus_per_trial and not args.ray_address and args.cpus_per_trial > os.cpu_count():
        raise UsageError(
            f"--cpus-per-trial {args.cpus_per_trial:g} is more than this machine's "
            f"{os.cpu_count()} CPUs; no worker could start"
        )

    from search.runner import SearchFailed, SearchRequest, StorageError, run_search
    from search.study import StudyMismatch, absolute_sqlite_url

    epochs = args.epochs or preset.epochs
    request = SearchRequest(
        method=args.method,
        dataset=dataset,
        source=args.dataset,
        window=args.window,
        step=args.step,
        space=space,
        preset=preset,
        trials=args.trials or preset.trials,
        epochs=epochs,
        workers=args.workers,
        patience=args.patience or max(2, round(epochs * preset.patience / preset.epochs)),
        pruner=args.pruner,
        seed=args.seed,
        teachers=teachers,
        teacher_epochs=args.teacher_epochs or preset.teacher_epochs,
        split=split,
        storage_url=absolute_sqlite_url(args.storage),
        tracking_uri=absolute_sqlite_url(args.tracking_uri),
        study=args.study
        or _default_study(args.method, dataset, args.preset, teachers, split, args.seed),
        cache_dir=Path(args.cache_dir).resolve(),
        cpus_per_trial=args.cpus_per_trial,
        ray_address=args.ray_address,
    )
    try:
        summary = run_search(request)
    except (StudyMismatch, StorageError) as error:
        raise UsageError(str(error)) from None
    except SearchFailed as error:
        print(f"{PROG}: search failed: {error}", file=sys.stderr)
        return 1

    counts = ", ".join(f"{n} {state.lower()}" for state, n in summary["counts"].items())
    print(f"done in {summary['seconds']:.0f}s: {counts}")
    if summary["best_trial"] is not None:
        print(
            f"best: trial {summary['best_trial']} val {summary['best_value']:.3f}; "
            f"'{PROG} best --method {args.method}"
            + "".join(f" {shlex.quote(word)}" for word in _study_words(args))
            + (f" --study {args.study}" if args.study else "")
            + "' prints its configuration"
        )
    return 0


def _best(argv: list[str]) -> int:
    args = _best_parser().parse_args(argv)
    _check_method(args.method)
    dataset, split = _check_data(args)
    teachers = _check_teachers(args.teachers, args.method)
    _check_url("--tracking-uri", args.tracking_uri, writable=False)
    path = sqlite_file(args.tracking_uri)
    if path is not None and not path.exists():
        raise UsageError(f"--tracking-uri: {path} does not exist; run a search first")
    study = args.study or _default_study(
        args.method, dataset, args.preset, teachers, split, args.seed
    )

    # MLflow draws a progress bar when it copies an artifact; `best` prints YAML only.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    import yaml
    from mlflow.tracking import MlflowClient

    from search import tracking
    from search.study import absolute_sqlite_url

    client = MlflowClient(absolute_sqlite_url(args.tracking_uri))
    experiment = client.get_experiment_by_name(tracking.experiment_name(dataset))
    searches = []
    if experiment is not None:
        searches = tracking.search_runs_of(client, experiment.experiment_id)
    if study not in {run.data.tags.get("study") for run in searches}:
        known = sorted({run.data.tags.get("study") for run in searches})
        raise UsageError(
            f"no study {study!r} for data set {dataset} in {args.tracking_uri}; "
            + (f"studies there: {', '.join(known)}" if known else "run a search first")
        )
    run = tracking.best_trial_run(client, experiment.experiment_id, study)
    if run is None:
        raise UsageError(f"study {study!r} has no COMPLETE trial yet in {args.tracking_uri}")
    summary = tracking.best_summary(client, run)

    if args.format == "json":
        text = json.dumps(summary, indent=2) + "\n"
    else:
        text = yaml.safe_dump(summary, sort_keys=False)
    if args.output:
        Path(args.output).write_text(text)
    sys.stdout.write(text)
    return 0


def _studies(argv: list[str]) -> int:
    args = _studies_parser().parse_args(argv)
    _check_url("--storage", args.storage, writable=False)
    path = sqlite_file(args.storage)
    if path is not None and not path.exists():
        raise UsageError(f"--storage: {path} does not exist; run a search first")

    import optuna
    from optuna.trial import TrialState

    from search.study import absolute_sqlite_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = absolute_sqlite_url(args.storage)
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=True):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        counts = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
        shown = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
        best = summary.best_trial
        best_text = f"best {best.value:.3f} (trial {best.number})" if best else "no complete trial"
        print(f"{summary.study_name}: {shown or 'no trials'}; {best_text}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbs = {"best": _best, "studies": _studies}
    try:
        if argv and argv[0] in verbs:
            return verbs[argv[0]](argv[1:])
        return _search(argv)
    except (UsageError, DataError) as error:
        message = " ".join(line.strip() for line in str(error).splitlines())
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
