"""`course`: the command line of the course.

Every user error is a CourseError, printed as `error: ...` with exit status 2;
so is an OSError (a path that cannot be read or written, a full disk). Any
other exception is a bug: one line `error: internal error ...` with exit
status 1 (COURSE_DEBUG=1 shows the traceback). `course grade` returns 3 when
some submissions were not graded (the grader's own trouble, or a timestamp.txt
that holds no time), and 130 after Ctrl-C or SIGTERM.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from autograde import __version__, interrupt
from autograde.errors import CourseError, describe_os_error

REPO_ROOT = Path(__file__).resolve().parent.parent
MAX_NEW_TOKENS = 4096              # `generate --max-new-tokens` at most (stated in --help)
MIN_TEMPERATURE = 0.01             # below this the division overflows; use --greedy for "temperature 0"
MAX_SEED = 2**64 - 1               # what torch.Generator.manual_seed takes


def _text(value: str, what: str) -> str:
    """A command-line string that is valid UTF-8 (bytes that are not arrive as lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = value[exc.start].encode("utf-8", "surrogateescape")
        raise CourseError(f"{what} is not valid UTF-8 text (byte 0x{bad.hex()} at character {exc.start + 1}); "
                          "pass UTF-8 text") from None
    return value


# ----------------------------------------------------------------------------
# subcommands


def cmd_tokenize(args) -> int:
    from autograde.reference.checkpoint import load_reference
    from autograde.reference.tokenizer import BPETokenizer

    text = _text(args.text, "TEXT")
    tok = _load_tokenizer(args.tokenizer) if args.tokenizer else load_reference().tokenizer
    allowed = "all" if args.allow_special else ()
    print(json.dumps(tok.encode(text, allowed_special=allowed)))
    return 0


def _load_tokenizer(path: str):
    from autograde.reference.tokenizer import BPETokenizer

    where = Path(path)
    if not where.exists():
        raise CourseError(f"--tokenizer {path} does not exist")
    if where.is_dir():
        hint = " (did you mean its tokenizer.json?)" if (where / "tokenizer.json").is_file() else ""
        raise CourseError(f"--tokenizer {path} is a directory; give a tokenizer.json file{hint}")
    try:
        return BPETokenizer.load(where)
    except CourseError:
        raise
    except OSError as exc:
        raise CourseError(f"--tokenizer {path} cannot be read: {describe_os_error(exc)}") from None
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise CourseError(f"--tokenizer {path} is not a tokenizer.json of this course "
                          f"({type(exc).__name__}: {str(exc)[:120]})") from None


def cmd_detokenize(args) -> int:
    from autograde.reference.checkpoint import load_reference

    try:
        ids = json.loads(args.ids)
    except json.JSONDecodeError as exc:
        raise CourseError(f"IDS must be a JSON list of integers, e.g. [1, 2, 3]: {exc}") from None
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise CourseError("IDS must be a JSON list of integers, e.g. [1, 2, 3]")
    print(load_reference().tokenizer.decode(ids))
    return 0


def check_generation_args(args) -> None:
    """The sampling options of `generate` and `chat`: one clear error for each bad value."""
    from autograde.reference.sampling import check_sampling_args

    if not args.greedy:
        check_sampling_args(args.temperature, args.top_k, args.top_p)
        if not math.isfinite(args.temperature):
            raise CourseError(f"--temperature must be a finite number (got {args.temperature})")
        if args.temperature < MIN_TEMPERATURE:
            raise CourseError(f"--temperature must be at least {MIN_TEMPERATURE} (got {args.temperature:g}); "
                              "for 'temperature 0' use --greedy")
    if args.seed is not None and not 0 <= args.seed <= MAX_SEED:
        raise CourseError(f"--seed must be between 0 and 2**64 - 1 (got {args.seed})")
    if args.max_new_tokens < 0:
        raise CourseError(f"--max-new-tokens must be >= 0 (got {args.max_new_tokens})")
    if args.max_new_tokens > MAX_NEW_TOKENS:
        raise CourseError(f"--max-new-tokens must be at most {MAX_NEW_TOKENS} (got {args.max_new_tokens})")


def cmd_generate(args) -> int:
    from autograde.reference.hf_load import load_model
    from autograde.reference.sampling import generate

    if not args.prompt:
        raise CourseError("the prompt is empty: give some text to continue")
    _text(args.prompt, "PROMPT")
    check_generation_args(args)
    loaded = load_model(args.model, args.device, args.dtype)
    ids = loaded.tokenizer.encode(args.prompt)
    window = loaded.model.cfg.max_seq_len
    if len(ids) > window:
        print(f"note: the prompt is {len(ids)} tokens; the model sees only its last {window} (its context length)",
              file=sys.stderr)
    new = generate(loaded.model, ids, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                   top_p=args.top_p, greedy=args.greedy, seed=args.seed, stop_id=loaded.stop_ids or None)
    print(args.prompt + loaded.tokenizer.decode(new))
    return 0


def cmd_chat(args) -> int:
    from autograde.reference.hf_load import chat_reply, load_model

    check_generation_args(args)
    loaded = load_model(args.model, args.device, args.dtype)
    messages = [{"role": "system", "content": args.system}] if args.system else []
    options = dict(max_new_tokens=args.max_new_tokens, thinking=args.thinking, temperature=args.temperature,
                   top_k=args.top_k, top_p=args.top_p, greedy=args.greedy, seed=args.seed)
    if args.message is not None:                      # one question, one answer
        print(chat_reply(loaded, messages + [{"role": "user", "content": args.message}], **options))
        return 0
    loaded.tokenizer.render_chat([{"role": "user", "content": "?"}])   # no template: say so before the prompt
    interactive = sys.stdin.isatty()
    if interactive:
        print("chat: an empty line or Ctrl-D ends it", file=sys.stderr)
    while True:
        try:
            line = input("> " if interactive else "").strip()
        except EOFError:
            return 0
        if not line:
            return 0
        messages.append({"role": "user", "content": line})
        reply = chat_reply(loaded, messages, **options)
        messages.append({"role": "assistant", "content": reply})
        print(reply, flush=True)


def cmd_export_hf(args) -> int:
    from autograde.reference.checkpoint import load_checkpoint, REFERENCE_DIR
    from autograde.reference.hf import export_hf

    if not args.directory.strip():
        raise CourseError("the output directory is empty: name a directory, e.g. `course export-hf out/`")
    if not args.force:
        _refuse_non_empty(args.directory)
    ref = load_checkpoint(args.model or REFERENCE_DIR)
    out = export_hf(ref.model, ref.tokenizer, args.directory, force=args.force)
    print(f"wrote {out}/config.json, model.safetensors, tokenizer.json")
    return 0


def _refuse_non_empty(directory: str) -> None:
    """Checked before the model loads: a refusal costs nothing."""
    path = Path(directory)
    if path.is_dir() and any(path.iterdir()):
        raise CourseError(f"{directory} is not empty; choose a new directory, or add --force to overwrite the "
                          "files of an earlier export there")


def cmd_train_reference(args) -> int:
    from autograde.reference.checkpoint import REFERENCE_DIR
    from autograde.reference.train import TrainSettings, train_reference

    settings = TrainSettings(steps=args.steps, seed=args.seed)
    log = train_reference(Path(args.out or REFERENCE_DIR), settings=settings, progress=not args.quiet)
    final = log["final"]
    print(f"trained {log['parameters']:,} parameters in {log['train_seconds']} s; "
          f"validation loss {final['val_loss']:.3f} "
          + " ".join(f"({k} {v:.3f})" for k, v in final["val_loss_by_language"].items()))
    return 0


def cmd_grpo_start(args) -> int:
    from autograde.reference.grpo import GRPO_DIR, SFTSettings, build_start_model

    log = build_start_model(Path(args.out or GRPO_DIR), SFTSettings(), progress=not args.quiet)
    print(f"trained the GRPO starting model ({log['parameters']:,} parameters) in {log['wall_seconds']} s: "
          f"greedy pass@1 {log['pass_at_1_held_out']:.1%} on {log['settings']['held_out']} held-out problems")
    return 0


def cmd_corpus(args) -> int:
    from autograde.reference.corpus import build_corpus

    manifest = build_corpus(REPO_ROOT / "course")
    for lang, info in manifest["languages"].items():
        print(f"{lang}: {info['documents']} documents, {info['characters']:,} characters")
    return 0


def cmd_figures(args) -> int:
    from autograde.figures import make_all

    for path in make_all(REPO_ROOT / "course"):
        print(path)
    return 0


def cmd_build(args) -> int:
    from autograde.build import build

    build(REPO_ROOT, skip_figures=args.skip_figures, skip_notebooks=args.skip_notebooks)
    return 0


def cmd_check(args) -> int:
    from autograde.grader.check import check_notebook

    status = check_notebook(Path(args.notebook), as_json=args.json, secret=args.secret, student=args.student)
    sys.stdout.flush()                  # everything is printed and no file is open: skip torch's
    sys.stderr.flush()                  # interpreter teardown (0.3-0.5 s)
    os._exit(status)


def cmd_release(args) -> int:
    from autograde.classroom import release

    done = release(_text(args.assignment, "ASSIGNMENT"), root=Path(args.root), gradebook_lang=args.lang,
                   due=None if args.due is None else _text(args.due, "--due"))
    print(f"{done.assignment}: recorded in {done.gradebook} (locked cells for nbgrader autograde: {done.lang})")
    print(f"due date: {done.due:%Y-%m-%d %H:%M:%S} UTC" if done.due else "due date: none (nothing is late)")
    for path in done.updated:
        print(f"updated {path}: commit it, students get it from there")
    if done.unchanged:
        print(f"{len(done.unchanged)} student notebook(s) already current, not rewritten")
    return 0


def cmd_feedback(args) -> int:
    from autograde.classroom import feedback

    made = feedback(_text(args.assignment, "ASSIGNMENT"), root=Path(args.root))
    print(f"wrote {len(made)} feedback file(s) under {Path(args.root).resolve() / 'feedback'}")
    return 0


def cmd_export_grades(args) -> int:
    from autograde.classroom import export_grades

    print(f"wrote {export_grades(Path(args.output), root=Path(args.root))}")
    return 0


def cmd_export_gradescope(args) -> int:
    from autograde.grader.gradescope import export

    langs = ("en", "ko") if args.lang == "both" else (args.lang,)
    path = export(args.assignment, Path(args.output), langs, secret_root=Path(args.root))
    print(f"wrote {path}: upload it as the autograder of {args.assignment} on Gradescope")
    return 0


def cmd_grade(args) -> int:
    from autograde.classroom import gradebook_path
    from autograde.grader.grade import grade_assignment

    assignment, root = _text(args.assignment, "ASSIGNMENT"), Path(args.root)
    _something_to_grade(assignment, root)
    status = grade_assignment(assignment, workers=args.workers, root=root)
    if status == 0:
        print(f"scores in {gradebook_path(root.resolve())}, graded notebooks under {root.resolve() / 'autograded'}; "
              f"next: course feedback {assignment}, then course export-grades")
    # everything finished is recorded already and the gradebook closed: a sandbox thread still winding
    # down after Ctrl-C must not hold the exit, and torch's interpreter teardown costs 0.3-0.5 s
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _something_to_grade(assignment: str, root: Path) -> None:
    """Refuse, before the gradebook is opened, an assignment nobody handed in: grading it anyway
    recorded the assignment in the gradebook, and every later export gave each student a 0 for it
    (`course grade 02_attention` out of habit after the renaming, or before collecting)."""
    from autograde.classroom import _course_root, _known
    from autograde.grader.grade import find_submissions

    _known(assignment)
    root = _course_root(root)
    found = find_submissions(root, assignment)
    if not found:
        raise CourseError(f"nothing to grade for {assignment}: no notebook in {root / 'submitted'}/*/{assignment}/ "
                          f"(each student's goes to submitted/STUDENT/{assignment}/{assignment}.ipynb); "
                          "the gradebook is unchanged")
    for student, path in sorted(found.items()):
        others = _other_notebooks(path)
        if others:
            print(f"note: {student} has {len(others) + 1} notebooks in {path.parent}: grading {path.name}, not "
                  f"{', '.join(others)} (leave only the one to grade there)", file=sys.stderr)


def _other_notebooks(graded: Path) -> list[str]:
    """The notebooks beside the one graded, which `course grade` does not look at: a student whose
    real work is in b.ipynb beside a blank a.ipynb scored 0 without a word. A folder that is a link
    is not listed (its notebook is refused when read)."""
    folder = graded.parent
    if folder.is_symlink() or not folder.is_dir():
        return []
    with os.scandir(folder) as scan:
        return sorted(e.name for e in scan if e.name.endswith(".ipynb") and e.name != graded.name)


# ----------------------------------------------------------------------------
# parser


def add_model_arguments(s, required: bool = False):
    hf = "a Hugging Face checkpoint of type llama, qwen2 or qwen3: its directory or hub id (org/name, needs network)"
    s.add_argument("--model", required=required, help=hf if required else
                   f"the course's checkpoint directory (default: the committed reference), or {hf}")
    s.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="default: cuda when available (the course's own small model stays on the CPU)")
    s.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
                   help="default: float32 on the CPU, the checkpoint's half precision on a GPU")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="course", description=(
        "LLMs from the token up: build the bilingual course, run the reference model, check and grade notebooks."))
    p.add_argument("--version", action="version", version=f"course {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("build", help="generate figures, student notebooks and the site (site/en, site/ko)",
                       description="Build the whole course: figures from the reference model, student notebooks "
                                   "from solutions/, and the static site for both languages into site/.")
    s.add_argument("--skip-figures", action="store_true", help="reuse the figures already in course/*/figures")
    s.add_argument("--skip-notebooks", action="store_true", help="do not regenerate exercises/")
    s.set_defaults(func=cmd_build)

    s = sub.add_parser("check", help="run a notebook's checks in a sandbox and print a per-item table",
                       description="Execute NOTEBOOK in a sandboxed process and report every graded item. "
                                   "Exit status 0 only when every item passes.")
    s.add_argument("notebook", help="path to a .ipynb file")
    s.add_argument("--json", action="store_true", help="print Gradescope-compatible JSON instead of a table")
    s.add_argument("--secret", help="the course secret (.course-secret): hidden cases as `course grade` draws "
                                    "them (default: COURSE_SECRET_FILE, else a fixed public stream)")
    s.add_argument("--student", default="", help="with --secret: grade as this student (their hidden cases)")
    s.set_defaults(func=cmd_check)

    s = sub.add_parser("grade", help="grade every submission of an assignment into the nbgrader gradebook",
                       description="Hardened, parallel, resumable grading of submitted/*/ASSIGNMENT into the "
                                   "same gradebook nbgrader uses. Exit status: 0 all graded; 3 some submissions "
                                   "NOT graded because of the grader's own trouble (full disk, no memory, a "
                                   "sandbox that could not start) or a timestamp.txt that holds no time (they "
                                   "are named, nothing is recorded for them: run again); 130 after Ctrl-C or SIGTERM (what finished is recorded; run again "
                                   "to resume).")
    s.add_argument("assignment", help="assignment name, e.g. 01_tokenizer")
    s.add_argument("--workers", type=int, default=2, help="parallel sandboxes (default 2)")
    s.add_argument("--root", default=".", help="nbgrader course root (default: current directory)")
    s.set_defaults(func=cmd_grade)

    s = sub.add_parser("release", help="record an assignment in the gradebook; bring its student notebooks up to date",
                       description="Record ASSIGNMENT in the gradebook (what `course grade` and `nbgrader autograde` "
                                   "grade against) and check exercises/<lang>/ASSIGNMENT against solutions/, "
                                   "rewriting a student notebook only when it changed. Runs nbgrader with this "
                                   "environment in a staging folder: a failure changes nothing. Safe to run again.")
    s.add_argument("assignment", help="assignment name, e.g. 03_attention")
    s.add_argument("--lang", choices=("en", "ko"), default="en",
                   help="whose locked cells plain `nbgrader autograde` restores (default en); `course grade` "
                        "grades each submission in its own language whatever this is")
    s.add_argument("--root", default=".", help="the course root holding the gradebook (default: current directory)")
    s.add_argument("--due", metavar="TIME",
                   help="the due date, with its zone: '2026-12-10 23:59 Asia/Seoul' or '2026-12-10 23:59+09:00' "
                        "('none' removes it; without --due the recorded one stays). `course grade` applies "
                        "nbgrader's late rule from nbgrader_config.py")
    s.set_defaults(func=cmd_release)

    s = sub.add_parser("feedback", help="write each student's feedback (HTML) for a graded assignment",
                       description="Run nbgrader generate_feedback on autograded/*/ASSIGNMENT (as `course grade` "
                                   "wrote it, each in its student's language) into feedback/STUDENT/ASSIGNMENT/.")
    s.add_argument("assignment", help="assignment name, e.g. 03_attention")
    s.add_argument("--root", default=".", help="the course root (default: current directory)")
    s.set_defaults(func=cmd_feedback)

    s = sub.add_parser("export-grades", help="write every score in the gradebook to a CSV file",
                       description="Run nbgrader export: one row per student and assignment, with the score and "
                                   "the maximum score. The file is replaced whole, never half-written.")
    s.add_argument("-o", "--output", default="grades.csv", help="the CSV file to write (default grades.csv)")
    s.add_argument("--root", default=".", help="the course root (default: current directory)")
    s.set_defaults(func=cmd_export_grades)

    s = sub.add_parser("export-gradescope", help="write a Gradescope autograder archive for an assignment",
                       description="Write autograder.zip for Gradescope: setup.sh installs this project and torch, "
                                   "run_autograder grades the submitted notebook with the same sandboxed checks as "
                                   "`course check` and writes results/results.json. The course secret (ROOT/"
                                   ".course-secret, created if missing) goes into the archive to seed the hidden "
                                   "cases; never share the archive with students.")
    s.add_argument("assignment", help="assignment name, e.g. 03_attention")
    s.add_argument("-o", "--output", default="autograder.zip", help="the archive to write (default autograder.zip)")
    s.add_argument("--lang", choices=("en", "ko", "both"), default="both",
                   help="which languages' notebooks students may submit (default both)")
    s.add_argument("--root", default=".", help="the course root holding .course-secret (default: current directory)")
    s.set_defaults(func=cmd_export_gradescope)

    s = sub.add_parser("tokenize", help="print the token ids of TEXT as a JSON list",
                       description="Encode TEXT with the reference tokenizer and print the ids as JSON.")
    s.add_argument("text")
    s.add_argument("--allow-special", action="store_true", help="encode <|endoftext|> in TEXT as the special token")
    s.add_argument("--tokenizer", help="a tokenizer.json of this course (default: the reference tokenizer)")
    s.set_defaults(func=cmd_tokenize)

    s = sub.add_parser("detokenize", help="print the text of a JSON list of token ids",
                       description="Decode IDS (a JSON list) with the reference tokenizer.")
    s.add_argument("ids")
    s.set_defaults(func=cmd_detokenize)

    s = sub.add_parser("generate", help="continue PROMPT with the reference model (or --model)",
                       description="Continue PROMPT with the trained reference model, or with --model. Sampling "
                                   "applies temperature, then top-k, then top-p. A prompt longer than the context "
                                   "(128 tokens for the reference) keeps its last tokens, with a note on stderr.")
    s.add_argument("prompt")
    s.add_argument("--max-new-tokens", type=int, default=40,
                   help=f"how many tokens to add, 0 to {MAX_NEW_TOKENS} (default 40)")
    s.add_argument("--temperature", type=float, default=1.0,
                   help=f"a finite number >= {MIN_TEMPERATURE} (default 1.0; --greedy for 'temperature 0')")
    s.add_argument("--top-k", type=int, default=None, help="keep the k most likely tokens (k >= 1)")
    s.add_argument("--top-p", type=float, default=None, help="keep the smallest set reaching probability p, 0 < p <= 1")
    s.add_argument("--seed", type=int, default=None, help="seed for reproducible sampling, 0 to 2**64 - 1")
    s.add_argument("--greedy", action="store_true", help="always take the most likely token")
    add_model_arguments(s)
    s.set_defaults(func=cmd_generate)

    s = sub.add_parser("chat", help="talk with a chat-tuned Hugging Face model run by the course's code",
                       description="Chat with --model (a transformers checkpoint directory or hub id of the llama, "
                                   "qwen2 or qwen3 type), using its own chat template. With MESSAGE, answer it "
                                   "once; without, read one message per line until an empty line or end of input.")
    s.add_argument("message", nargs="?", help="a single message to answer (default: read lines from stdin)")
    s.add_argument("--system", help="a system message that opens the conversation")
    s.add_argument("--max-new-tokens", type=int, default=256)
    s.add_argument("--temperature", type=float, default=0.7, help="> 0 (default 0.7)")
    s.add_argument("--top-k", type=int, default=None, help="keep the k most likely tokens (k >= 1)")
    s.add_argument("--top-p", type=float, default=0.9, help="0 < p <= 1 (default 0.9)")
    s.add_argument("--seed", type=int, default=None, help="seed for reproducible sampling")
    s.add_argument("--greedy", action="store_true", help="always take the most likely token")
    s.add_argument("--thinking", action="store_true", help="let a reasoning model (Qwen3) think before answering")
    add_model_arguments(s, required=True)
    s.set_defaults(func=cmd_chat)

    s = sub.add_parser("export-hf", help="write the reference model as a transformers model directory",
                       description="Write config.json, model.safetensors and tokenizer.json that transformers' "
                                   "AutoModelForCausalLM and tokenizers' Tokenizer load offline.")
    s.add_argument("directory", help="a new or empty directory")
    s.add_argument("--model", help="a checkpoint directory (default: the committed reference)")
    s.add_argument("--force", action="store_true", help="write into a directory that is not empty, "
                                                        "replacing the files of the same names")
    s.set_defaults(func=cmd_export_hf)

    s = sub.add_parser("train-reference", help="train the reference tokenizer and model (deterministic, CPU)",
                       description="Train the BPE tokenizer and the Llama-style reference model on the committed "
                                   "corpus, deterministically, and write weights, tokenizer and train_log.json.")
    s.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the committed setting)")
    s.add_argument("--seed", type=int, default=1234)
    s.add_argument("--out", help="output directory (default: autograde/data/reference)")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_train_reference)

    s = sub.add_parser("grpo-start", help="train the small model that notebook 9's GRPO run starts from",
                       description="Train, deterministically on one CPU thread (about 10 s), the 2-layer model "
                                   "that adds two-digit numbers partly right, and write model.safetensors, "
                                   "config.json and sft_log.json (default: autograde/data/grpo). The GRPO run "
                                   "itself is bench/bench_grpo.py.")
    s.add_argument("--out", help="output directory (default: autograde/data/grpo)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_grpo_start)

    s = sub.add_parser("corpus", help="rebuild the versioned training corpus from the chapters",
                       description="Rebuild autograde/data/corpus/{en,ko}.txt and manifest.json from course/ "
                                   "and the extra prose. Retrain with `course train-reference` afterwards.")
    s.set_defaults(func=cmd_corpus)

    s = sub.add_parser("figures", help="regenerate the figures in course/*/figures from the reference model",
                       description="Draw every figure of the site from the reference model, deterministically.")
    s.set_defaults(func=cmd_figures)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "command", None) == "grade":
        interrupt.install()     # SIGTERM stops it as Ctrl-C does, from the first import on
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    if getattr(args, "steps", 0) is None:
        from autograde.reference.train import TrainSettings

        args.steps = TrainSettings().steps
    try:
        return int(args.func(args) or 0)
    except CourseError as exc:
        print(f"error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except (OSError, MemoryError) as exc:      # a path that cannot be read or written, a full disk
        print(f"error: {_one_line(describe_os_error(exc))}", file=sys.stderr)
        return 2
    except Exception as exc:                   # a bug: still one line (COURSE_DEBUG=1 for the traceback)
        if os.environ.get("COURSE_DEBUG"):
            raise
        print(f"error: internal error in `course {args.command}`: {type(exc).__name__}: "
              f"{_one_line(str(exc))[:300]} (please report it; COURSE_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1
    finally:
        interrupt.forget_caught_interrupt()   # the exit status is ours to give, never a SIGINT death


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "(no message)"


if __name__ == "__main__":
    sys.exit(main())
