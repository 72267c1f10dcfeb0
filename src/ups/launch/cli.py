"""Command line of `scripts/vast_launch.py`: rent a Vast.ai GPU, run the pipeline, recover.

The parser lives here (the script stays a few lines); the commands are in
`ups.launch.commands`. Every error is one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import sys

from ups.errors import UpsError
from ups.launch import commands
from ups.launch.onstart import DEFAULT_WORKSPACE
from ups.launch.validate import GIT_METHODS, RESUME_MODES, SHUTDOWN_ACTIONS
from ups.launch.vast import DEFAULT_IMAGE

PROG = "vast_launch.py"
EXAMPLES = {
    "search": "python scripts/vast_launch.py search --gpu-name RTX_4090 --max-price 0.6",
    "launch": "python scripts/vast_launch.py launch --config configs/train_burgers_32dim.yaml \\\n"
              "      --gpu-name RTX_4090 --checkpoint-remote s3://my-bucket/run1 \\\n"
              "      --env WANDB_API_KEY --env AWS_ACCESS_KEY_ID --env AWS_SECRET_ACCESS_KEY \\\n"
              "      --auto-shutdown --shutdown-action destroy --dry-run",
    "status": "python scripts/vast_launch.py status 1234567",
    "logs": "python scripts/vast_launch.py logs 1234567 --tail 200",
    "stop": "python scripts/vast_launch.py stop 1234567",
    "destroy": "python scripts/vast_launch.py destroy 1234567 --yes",
    "watch": "python scripts/vast_launch.py watch 1234567 --config configs/train_burgers_32dim.yaml \\\n"
             "      --checkpoint-remote s3://my-bucket/run1 --env AWS_ACCESS_KEY_ID \\\n"
             "      --env AWS_SECRET_ACCESS_KEY --interruptible --bid 0.3 --max-relaunches 3",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + error
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _machine_options() -> argparse.ArgumentParser:
    p = _Parser(add_help=False)
    g = p.add_argument_group("machine")
    g.add_argument("--gpu-name", metavar="NAME", help="GPU model, e.g. RTX_4090 or H100_SXM (default: any)")
    g.add_argument("--num-gpus", type=int, default=1, metavar="N", help="GPUs per instance (default: 1)")
    g.add_argument("--max-price", type=float, metavar="USD", help="most $/hour for the whole instance")
    g.add_argument("--min-reliability", type=float, default=0.98, metavar="R",
                   help="host reliability score 0-1 (default: 0.98)")
    g.add_argument("--disk-gb", type=float, default=50.0, metavar="GB", help="disk to rent (default: 50)")
    g.add_argument("--interruptible", action="store_true",
                   help="rent an interruptible (bid) instance: cheaper, paused when outbid; needs --bid")
    g.add_argument("--bid", type=float, metavar="USD",
                   help="bid for --interruptible, in $/hour for the whole machine (all its GPUs "
                        "together, not per GPU); Vast accepts 0.001-128")
    return p


def _run_options() -> argparse.ArgumentParser:
    p = _Parser(add_help=False)
    g = p.add_argument_group("run")
    g.add_argument("--config", required=True,
                   help="training config, relative to the checkout; its training.checkpoint_dir is read "
                        "from your copy of it when present (the instance clears or resumes that directory)")
    g.add_argument("--resume-from-wandb", metavar="RUN_ID",
                   help="resume from this W&B run (downloads its checkpoints, continues the run)")
    g.add_argument("--resume-mode", choices=RESUME_MODES, default="allow",
                   help="W&B resume mode: allow (default), must (fail if no run), never")
    g.add_argument("--checkpoint-remote", metavar="URI",
                   help="fsspec URI where training keeps its remote copy (s3://..., gs://..., file://...)")
    g.add_argument("--auto-shutdown", action="store_true",
                   help="after a successful run the instance stops itself through the Vast API")
    g.add_argument("--shutdown-action", choices=SHUTDOWN_ACTIONS, default="stop",
                   help="stop: GPU billing ends, the disk is kept and still billed; "
                        "destroy: ALL billing ends and the instance and its disk are deleted")
    g.add_argument("--branch", default="main", help="git branch, tag or commit to run (default: main)")
    g.add_argument("--git-method", choices=GIT_METHODS, default="clone",
                   help="clone: git clone on the instance (default); docker: code is in the image")
    g.add_argument("--repo-url", metavar="URL", help="repository to clone (default: this checkout's origin)")
    g.add_argument("--workspace", default=DEFAULT_WORKSPACE, metavar="DIR",
                   help=f"directory on the instance (default: {DEFAULT_WORKSPACE})")
    g.add_argument("--image", default=DEFAULT_IMAGE, help=f"Docker image (default: {DEFAULT_IMAGE})")
    g.add_argument("--env", action="append", metavar="NAME",
                   help="forward this local environment variable (e.g. WANDB_API_KEY) to the "
                        "instance; repeatable; values are never printed")
    g.add_argument("--python", default="python", metavar="EXE",
                   help="python on the instance (default: python)")
    g.add_argument("--install-cmd", metavar="CMD",
                   help="install command, split like a shell line but run without a shell "
                        "(default: PYTHON -m pip install -e '.[launch]')")
    g.add_argument("--onstart-out", default=".vast/onstart.sh", metavar="PATH",
                   help="where to save the generated script (default: .vast/onstart.sh)")
    return p


def _id_parser(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=help_text, epilog=f"example:\n  {EXAMPLES[name]}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("instance_id", type=int, metavar="INSTANCE_ID")
    return p


def _add_watch(sub, run: argparse.ArgumentParser, machine: argparse.ArgumentParser) -> None:
    text = ("Watch an instance; when it is exited/offline/unknown past --down-timeout, paused "
            "(outbid, or stopped in the web console) past --stopped-timeout, hung past --hang-timeout, "
            "or its host cannot start its container, launch a replacement that resumes from the remote "
            "(--checkpoint-remote, else --resume-from-wandb) and destroy the lost one. Ends when the "
            "run records its outcome in the remote, or on a stop/destroy made with vast_launch.py.")
    p = sub.add_parser("watch", parents=[run, machine], help="watch an instance and relaunch it when lost",
                       description=text, epilog=f"example:\n  {EXAMPLES['watch']}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("instance_id", type=int, metavar="INSTANCE_ID")
    p.add_argument("--max-relaunches", type=int, default=3, metavar="N", help="default: 3")
    p.add_argument("--poll-seconds", type=float, default=60.0, metavar="S", help="default: 60")
    p.add_argument("--down-timeout", type=float, default=600.0, metavar="S",
                   help="exited/offline/unknown this long -> relaunch (default: 600)")
    p.add_argument("--stopped-timeout", type=float, default=1800.0, metavar="S",
                   help="paused (an outbid interruptible instance) this long -> relaunch (default: 1800)")
    p.add_argument("--start-timeout", type=float, default=1800.0, metavar="S",
                   help="still loading or not yet running this long -> relaunch (default: 1800)")
    p.add_argument("--hang-timeout", type=float, default=3600.0, metavar="S",
                   help="running, but the run's heartbeat in --checkpoint-remote has not advanced this "
                        "long -> relaunch; keep it above the longest gap between saved states "
                        "(default: 3600; 0: off)")
    p.set_defaults(func=commands.cmd_watch)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Rent a Vast.ai GPU, train there with auto-resume, "
                     "and recover when the instance is lost.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run, machine = _run_options(), _machine_options()
    fmt = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser("search", parents=[machine], help="list offers matching the machine filters",
                       description="List offers that match, cheapest first.",
                       epilog=f"example:\n  {EXAMPLES['search']}", formatter_class=fmt)
    p.add_argument("--limit", type=int, default=20, help="default: 20")
    p.set_defaults(func=commands.cmd_search)

    p = sub.add_parser("launch", parents=[run, machine], help="rent an instance and train on it",
                       description="Rent an instance whose onstart script clones, installs, fetches "
                                   "data and trains with --auto-resume (safe to rerun on restarts).",
                       epilog=f"example:\n  {EXAMPLES['launch']}", formatter_class=fmt)
    p.add_argument("--offer-id", type=int, metavar="ID", help="rent this offer (default: cheapest match)")
    p.add_argument("--resume-from-remote", action="store_true",
                   help="resume from --checkpoint-remote (RESUME MODE: never clear checkpoints)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the script and the request (secrets redacted); send nothing")
    p.set_defaults(func=commands.cmd_launch)

    p = sub.add_parser("status", help="show one instance, or all of yours", description="Show instances.",
                       epilog=f"example:\n  {EXAMPLES['status']}", formatter_class=fmt)
    p.add_argument("instance_id", type=int, nargs="?", metavar="INSTANCE_ID")
    p.set_defaults(func=commands.cmd_status)
    p = _id_parser(sub, "logs", "print an instance's logs")
    p.add_argument("--tail", type=int, metavar="N", help="only the last N lines")
    p.set_defaults(func=commands.cmd_logs)
    remote_help = ("also record the stop in this remote copy, so a watch on another machine "
                   "knows it was yours (it is always recorded on this machine)")
    p = _id_parser(sub, "stop", "stop an instance (GPU billing ends; disk kept, still billed)")
    p.add_argument("--checkpoint-remote", metavar="URI", help=remote_help)
    p.set_defaults(func=commands.cmd_stop)
    p = _id_parser(sub, "destroy", "destroy an instance and its disk (all billing ends)")
    p.add_argument("--yes", action="store_true", help="confirm: the disk is deleted")
    p.add_argument("--checkpoint-remote", metavar="URI", help=remote_help)
    p.set_defaults(func=commands.cmd_destroy)
    _add_watch(sub, run, machine)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UpsError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted: nothing else was changed", file=sys.stderr)
        return 130
