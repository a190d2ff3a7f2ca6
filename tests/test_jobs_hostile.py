"""Archive jobs against a hostile user: edited job directories, a folder given as --job, two runs at once,
leftovers of killed runs, nonsense numbers, an output folder inside the input tree.

Each test here is a bug that was found by doing what it does (see the report in the commit). The clip is
tiny (96×64, 24 frames, a keyframe every 4) and cut into 3 segments, coded ffv1 so that outputs compare
frame for frame.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from support.media import make_clip, panned_frames, video_frames
from streamrestore.errors import ConfigError, InputNotFoundError, JobBusyError, JobMismatchError, OutputError
from streamrestore.jobs import Job, JobOptions, manifest as manifests
from streamrestore.jobs.batch import restore_many
from streamrestore.jobs.plan import SourceIndex, frame_range, make_plan
from streamrestore.restore import OutputSettings

FRAMES = 24
SEGMENT = 0.3  # two GOPs of 4 frames at 25 fps: 3 segments


def _job(src: Path, dst: Path, job_dir: Path | None = None, **options) -> Job:
    return Job(str(src), str(dst), "unsharp",
               JobOptions(output=OutputSettings(codec="ffv1"), segment_seconds=SEGMENT,
                          job_dir=str(job_dir) if job_dir else None, **options))


def _pixels(path: Path) -> list[np.ndarray]:
    return [frame.to_ndarray() for frame in video_frames(path)]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A source, its job directory as a finished run left it (--keep-job), and the frames it gave."""
    root = tmp_path_factory.mktemp("hostile")
    src = root / "clip.mkv"
    make_clip(src, panned_frames(FRAMES, 96, 64), time_base=Fraction(1, 25), options={"preset": "ultrafast", "g": "4"})
    report = _job(src, root / "out.mkv", root / "job", keep_job=True).run()
    assert report.segments == 3 and report.frames == FRAMES
    return src, root / "job", _pixels(root / "out.mkv")


def _copy_job(finished, tmp_path: Path) -> Path:
    job_dir = tmp_path / "job"
    shutil.copytree(finished[1], job_dir)
    return job_dir


# -- --job naming a folder that holds other files ------------------------------------------------
@pytest.mark.parametrize("restart", [False, True])
def test_job_dir_that_holds_other_files_loses_only_the_jobs_own(finished, tmp_path, restart):
    # Was: a successful run did shutil.rmtree(--job DIR): `--job .` deleted the input, the output and
    # everything else in the current folder (exit 0); --restart deleted the folder before starting.
    src = tmp_path / "clip.mkv"
    shutil.copy(finished[0], src)
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "piece-7.nut").write_text("not a job's piece name")
    if restart:
        (tmp_path / manifests.NAME).write_text(json.dumps({"version": 0}))  # a stale job in the same folder

    _job(src, tmp_path / "out.mkv", tmp_path, restart=restart).run()

    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mkv", "notes.txt", "out.mkv", "piece-7.nut"]
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert [np.array_equal(a, b) for a, b in zip(_pixels(tmp_path / "out.mkv"), finished[2], strict=True)] \
        == [True] * FRAMES


# -- a job directory someone edited --------------------------------------------------------------
def _edit(data: dict, how: str) -> object:
    if how == "a list":
        return []
    if how == "pieces a list":
        return {**data, "pieces": [1]}
    if how == "piece not an object":
        return {**data, "pieces": {**data["pieces"], "0": 5}}
    if how == "piece index with a path":
        return {**data, "pieces": {"../../x": data["pieces"]["0"]}}
    if how == "negative piece index":
        return {**data, "pieces": {"-3": data["pieces"]["0"]}}
    if how == "count a string":
        return {**data, "segments": [{**data["segments"][0], "count": "8"}, *data["segments"][1:]]}
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["a list", "pieces a list", "piece not an object", "piece index with a path",
                                 "negative piece index", "count a string"])
def test_manifest_with_wrong_types_is_refused_in_one_line(finished, tmp_path, how):
    # Was: AttributeError / TypeError tracebacks (exit 70) for all but the path.
    job_dir = _copy_job(finished, tmp_path)
    data = json.loads((job_dir / manifests.NAME).read_text())
    (job_dir / manifests.NAME).write_text(json.dumps(_edit(data, how)))
    with pytest.raises(JobMismatchError, match=r"manifest.json' is not a streamrestore manifest; use --restart$"):
        _job(finished[0], tmp_path / "out.mkv", job_dir).plan()


def test_manifest_nested_too_deep_is_refused(finished, tmp_path):
    # Was: RecursionError from json.loads (exit 70) on 100 000 "[".
    job_dir = _copy_job(finished, tmp_path)
    (job_dir / manifests.NAME).write_text("[" * 100_000)
    with pytest.raises(JobMismatchError, match="is not a streamrestore manifest"):
        _job(finished[0], tmp_path / "out.mkv", job_dir).plan()


@pytest.mark.parametrize("segments", [2, 200_000])
def test_manifest_whose_plan_was_edited_is_refused(finished, tmp_path, segments):
    # Was: 2 segments of 3 listed -> the join wrote 16 of 24 frames, exit 0; 200 000 -> no end in sight.
    job_dir = _copy_job(finished, tmp_path)
    data = json.loads((job_dir / manifests.NAME).read_text())
    first = data["segments"][0]
    data["segments"] = data["segments"][:segments] if segments < 3 else \
        [{**first, "index": i} for i in range(segments)]
    (job_dir / manifests.NAME).write_text(json.dumps(data))
    started = time.perf_counter()
    with pytest.raises(JobMismatchError, match=rf"plan \({segments} segments\) is not this input's \(3 segments\)"):
        _job(finished[0], tmp_path / "out.mkv", job_dir).plan()
    assert time.perf_counter() - started < 30


def test_job_dir_that_is_a_file_or_manifest_that_is_a_folder(finished, tmp_path):
    # Was: NotADirectoryError / IsADirectoryError tracebacks (exit 70).
    a_file = tmp_path / "job-file"
    a_file.write_text("x")
    with pytest.raises(OutputError, match="is not a directory; choose another --job"):
        _job(finished[0], tmp_path / "out.mkv", a_file).plan()
    job_dir = _copy_job(finished, tmp_path)
    (job_dir / manifests.NAME).unlink()
    (job_dir / manifests.NAME).mkdir()
    with pytest.raises(JobMismatchError, match=r"cannot read .* \(Is a directory\); use --restart"):
        _job(finished[0], tmp_path / "out.mkv", job_dir).plan()


def test_pieces_that_are_symlinks_swapped_or_folders(finished, tmp_path):
    job_dir = _copy_job(finished, tmp_path)
    outside = tmp_path / "outside.txt"
    outside.write_text("must stay as it is")
    (job_dir / "piece-00001.nut").unlink()
    (job_dir / "piece-00001.nut").symlink_to(outside)
    swapped = (job_dir / "piece-00002.nut").read_bytes()
    (job_dir / "piece-00002.nut").write_bytes((job_dir / "piece-00000.nut").read_bytes())  # a valid NUT, other frames

    report = _job(finished[0], tmp_path / "out.mkv", job_dir, keep_job=True).run()

    assert report.resumed_segments == 1 and report.redone_segments == 2
    assert outside.read_text() == "must stay as it is"
    assert not (job_dir / "piece-00001.nut").is_symlink() and (job_dir / "piece-00002.nut").read_bytes() == swapped
    assert all(np.array_equal(a, b) for a, b in zip(_pixels(tmp_path / "out.mkv"), finished[2], strict=True))

    # Was: IsADirectoryError from unlink (exit 70); now one line, exit 10.
    shutil.rmtree(job_dir)
    job_dir = _copy_job(finished, tmp_path)
    (job_dir / "piece-00001.nut").unlink()
    (job_dir / "piece-00001.nut").mkdir()
    with pytest.raises(OutputError, match=r"cannot remove .*piece-00001.nut' from the job directory: Is a directory$"):
        _job(finished[0], tmp_path / "out2.mkv", job_dir).run()


# -- what a kill -9 leaves ---------------------------------------------------------------------
def test_leftovers_of_killed_runs_are_removed_and_the_output_is_the_same(finished, tmp_path):
    # Was: a manifest temporary from a save killed before its rename stayed in the job directory for good.
    job_dir = _copy_job(finished, tmp_path)
    data = json.loads((job_dir / manifests.NAME).read_text())
    del data["pieces"]["2"]  # killed between the piece's rename and the manifest's save
    (job_dir / manifests.NAME).write_text(json.dumps(data))
    (job_dir / ".manifest.json.999999.tmp").write_text('{"vers')  # killed during the manifest's write
    (job_dir / "piece-00001.nut.999999.partial").write_bytes(b"half a piece")  # killed during a piece

    report = _job(finished[0], tmp_path / "out.mkv", job_dir, keep_job=True).run()

    assert report.resumed_segments == 2
    assert sorted(p.name for p in job_dir.iterdir()) == [".lock", "manifest.json", "piece-00000.nut",
                                                         "piece-00001.nut", "piece-00002.nut"]
    assert all(np.array_equal(a, b) for a, b in zip(_pixels(tmp_path / "out.mkv"), finished[2], strict=True))


# -- two runs at once ----------------------------------------------------------------------------
def test_a_second_run_of_a_running_job_stops_in_one_line(finished, tmp_path):
    # Was: the second run deleted the first one's half-written piece as a leftover; the first died with
    # FileNotFoundError (exit 70) and the second wrote the output. Now the second stops: exit 17.
    job_dir = _copy_job(finished, tmp_path)
    partial = job_dir / f"piece-00001.nut.{os.getpid()}.partial"
    partial.write_bytes(b"being written by the first run")
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time\n"
                               f"fd = os.open({str(job_dir / manifests.LOCK)!r}, os.O_RDWR | os.O_CREAT)\n"
                               "fcntl.flock(fd, fcntl.LOCK_EX); os.ftruncate(fd, 0); os.write(fd, b'4242'); print('ok', flush=True)\n"
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ok"
        with pytest.raises(JobBusyError, match=r"^the job directory '.*' is in use by process 4242; wait for it"):
            _job(finished[0], tmp_path / "out.mkv", job_dir).run()
    finally:
        holder.kill()
        holder.wait()
    assert partial.read_bytes() == b"being written by the first run" and not (tmp_path / "out.mkv").exists()
    assert JobBusyError.exit_code == 17
    _job(finished[0], tmp_path / "out.mkv", job_dir).run()  # the lock went with the process
    assert not job_dir.exists()


def test_a_second_run_into_the_same_output_folder_stops(finished, tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.copy(finished[0], tree / "a.mkv")
    out = tmp_path / "out"
    out.mkdir()
    with manifests.locked(out, "the output folder", ".streamrestore-lock"):
        with pytest.raises(JobBusyError, match="the output folder .* is in use by process"):
            restore_many(str(tree), str(out), "unsharp", JobOptions(segment_seconds=SEGMENT))
    assert not (out / "a.mkv").exists()


# -- numbers -------------------------------------------------------------------------------------
def test_nan_segment_length_and_range_are_refused():
    # Was: --segment-seconds nan planned one segment silently; --start nan read as "past the end".
    index = SourceIndex(tuple(range(0, 240, 10)), (0, 40, 80), Fraction(1, 100))
    with pytest.raises(ConfigError, match="--segment-seconds must be > 0, got nan"):
        make_plan(index, math.nan)
    for start, duration in ((math.nan, 1.0), (0.0, math.nan), (-1.0, None)):
        with pytest.raises(ConfigError, match=r"^--start must be >= 0 and --duration > 0$"):
            frame_range(index, start, duration)
    assert len(make_plan(index, math.inf)) == 1


def test_negative_workers_from_the_library_are_refused(finished, tmp_path):
    # Was: ProcessPoolExecutor(max_workers=-1) raised ValueError (exit 70).
    with pytest.raises(ConfigError, match="--workers must be at least 1, got -1"):
        _job(finished[0], tmp_path / "out.mkv", workers=-1).run()


# -- many files ----------------------------------------------------------------------------------
def test_output_folder_inside_the_input_folder_is_not_restored_again(finished, tmp_path):
    # Was: the rerun found restored/a.mkv in the tree and restored it into restored/restored/a.mkv.
    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.copy(finished[0], tree / "a.mkv")
    out = tree / "restored"
    options = JobOptions(output=OutputSettings(codec="ffv1"), segment_seconds=SEGMENT)
    first = restore_many(str(tree), str(out), "unsharp", options)
    second = restore_many(str(tree), str(out), "unsharp", options)
    assert [o.status for o in first] == ["done"] and [o.status for o in second] == ["skipped"]
    assert sorted(str(p.relative_to(tree)) for p in tree.rglob("*.mkv")) == ["a.mkv", "restored/a.mkv"]


def test_a_list_of_ten_thousand_missing_files_fails_each_as_not_found(tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"/nonexistent/dir{i % 7}/clip{i}.mkv\n" for i in range(10_000)))
    started = time.perf_counter()
    outcomes = restore_many(str(listing), str(tmp_path / "out"), "unsharp")
    assert time.perf_counter() - started < 60
    assert len(outcomes) == 10_000 and {o.status for o in outcomes} == {"failed"}
    assert {o.exit_code for o in outcomes} == {InputNotFoundError.exit_code}  # was 1
    assert outcomes[5].message == "input not found: '/nonexistent/dir5/clip5.mkv'"


def test_an_input_that_grows_during_the_run_is_not_joined(finished, tmp_path):
    # Was: planned on the old file, joined with the grown one's other streams, exit 0; only the next run
    # noticed the change. Now the join is refused (exit 14) and the pieces stay for --restart to discard.
    src = tmp_path / "clip.mkv"
    shutil.copy(finished[0], src)
    job = _job(src, tmp_path / "out.mkv", tmp_path / "job")
    job.plan()
    with open(src, "ab") as grown:
        grown.write(b"\0" * 4096)
    with pytest.raises(JobMismatchError, match=r"^the input changed since the job started \(size, mtime_ns"):
        job.run()
    assert not (tmp_path / "out.mkv").exists() and len(list((tmp_path / "job").glob("piece-*.nut"))) == 3


def test_killed_after_the_outputs_rename_the_same_command_finishes(finished, tmp_path):
    # Was: the output was in place but the job directory not yet removed; the same command then stopped with
    # "output exists; use --overwrite" (exit 10) and the pieces stayed on disk for good.
    job_dir = tmp_path / "job"
    _job(finished[0], tmp_path / "out.mkv", job_dir, keep_job=True).run()  # the state such a kill leaves
    joined = (tmp_path / "out.mkv").read_bytes()

    report = _job(finished[0], tmp_path / "out.mkv", job_dir).run()

    assert report.frames == FRAMES and report.resumed_segments == 3 and not job_dir.exists()
    assert (tmp_path / "out.mkv").read_bytes() == joined
    # An output changed since (or another file under that name) is not taken for the job's: the usual refusal.
    _job(finished[0], tmp_path / "out2.mkv", job_dir, keep_job=True).run()
    with open(tmp_path / "out2.mkv", "ab") as changed:
        changed.write(b"\0")
    with pytest.raises(OutputError, match="exists; use --overwrite"):
        _job(finished[0], tmp_path / "out2.mkv", job_dir).run()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
def test_workers_end_when_the_driver_is_killed(tmp_path):
    # Was: after `kill -9` of a `--workers 2` driver its worker processes finished the segments queued to them,
    # then waited forever (seen 40 s later, idle, each holding its chain; on a GPU, its memory).
    driver = subprocess.Popen([sys.executable, "-c", """
import multiprocessing, os, time
from concurrent.futures import ProcessPoolExecutor
from streamrestore.jobs import local
context = multiprocessing.get_context("spawn")
pool = ProcessPoolExecutor(2, mp_context=context, initializer=local._start_worker,
                           initargs=(context.Queue(), [], context.Value("i", 0), os.getpid()))
started = [pool.submit(os.getpid) for _ in range(2)]
print(*{f.result() for f in started}, *pool._processes, flush=True)
for _ in range(4):
    pool.submit(time.sleep, 60)
time.sleep(60)
"""], stdout=subprocess.PIPE, text=True)
    workers: set[int] = set()
    try:
        workers |= {int(pid) for pid in driver.stdout.readline().split()}
        assert workers and all(_alive(pid) for pid in workers)
        driver.kill()
        driver.wait()
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in workers)
    finally:
        driver.kill()
        for pid in workers:
            if _alive(pid):  # only when the test failed: leave no process behind
                os.kill(pid, signal.SIGKILL)


def test_job_dir_equal_to_the_output_is_refused_before_any_work(finished, tmp_path):
    # Was: every segment restored, then "cannot move the finished output" (exit 10), and the rerun found the
    # output's name taken by the job directory.
    with pytest.raises(ConfigError, match="--job and -o name the same path"):
        _job(finished[0], tmp_path / "out.mkv", tmp_path / "out.mkv").run()
    assert not (tmp_path / "out.mkv").exists()


@pytest.mark.parametrize("ledger", ["[]", '{"a.mkv": 5}', "[" * 100_000])
def test_an_edited_ledger_means_the_files_are_done_again(finished, tmp_path, ledger):
    # Was: AttributeError from the ledger ('list' object has no attribute 'get'): exit 70 before any file.
    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.copy(finished[0], tree / "a.mkv")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".streamrestore-done.json").write_text(ledger)
    outcomes = restore_many(str(tree), str(out), "unsharp", JobOptions(output=OutputSettings(codec="ffv1"),
                                                                      segment_seconds=SEGMENT))
    assert [o.status for o in outcomes] == ["done"]
    assert all(np.array_equal(a, b) for a, b in zip(_pixels(out / "a.mkv"), finished[2], strict=True))


def test_a_folder_without_media_is_not_found(tmp_path):
    # Was: exit 0 with an empty summary, where a glob or a list matching nothing is exit 3.
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no media here")
    with pytest.raises(InputNotFoundError, match="no media files in"):
        restore_many(str(tmp_path / "empty"), str(tmp_path / "out"), "unsharp")


def test_output_folder_that_is_the_input_folder_is_refused(finished, tmp_path):
    # Each output would be its own input: every file failed as "the input" (exit 15 after planning each).
    # Now a bad option, before any work; a folder above the tree is fine (the outputs land beside it).
    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.copy(finished[0], tree / "a.mkv")
    with pytest.raises(ConfigError, match=r"is the input folder: each output would replace its input"):
        restore_many(str(tree), str(tree), "unsharp")
    assert sorted(p.name for p in tree.iterdir()) == ["a.mkv"]
    options = JobOptions(output=OutputSettings(codec="ffv1"), segment_seconds=SEGMENT)
    assert [o.status for o in restore_many(str(tree), str(tmp_path), "unsharp", options)] == ["done"]
    assert len(video_frames(tmp_path / "a.mkv")) == FRAMES


def test_disk_full_during_the_join_keeps_the_pieces_and_leaves_no_temporary(finished, tmp_path, monkeypatch):
    from streamrestore.errors import DiskFullError
    from streamrestore.jobs import join

    real, calls = join._JoinWriter.mux_video, []

    def filling(self, packet):
        calls.append(1)
        if len(calls) == 5:
            raise DiskFullError(f"disk full while writing {self.container.name!r}")
        real(self, packet)

    monkeypatch.setattr(join._JoinWriter, "mux_video", filling)
    job_dir = tmp_path / "job"
    with pytest.raises(DiskFullError, match="^disk full while writing"):
        _job(finished[0], tmp_path / "out.mkv", job_dir).run()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job"]  # no output, no temporary beside it
    monkeypatch.setattr(join._JoinWriter, "mux_video", real)

    report = _job(finished[0], tmp_path / "out.mkv", job_dir).run()  # space freed: the same command

    assert report.resumed_segments == 3 and not job_dir.exists()
    assert all(np.array_equal(a, b) for a, b in zip(_pixels(tmp_path / "out.mkv"), finished[2], strict=True))


def test_two_inputs_with_one_output_name_do_not_replace_each_other(tmp_path):
    # Was: x.jpg and x.png were both restored to x.png, the second over the first, and both reported done.
    import cv2

    from support.media import photo

    tree = tmp_path / "tree"
    tree.mkdir()
    cv2.imwrite(str(tree / "x.jpg"), photo("chelsea", 64, 48)[:, :, ::-1])
    cv2.imwrite(str(tree / "x.png"), photo("coffee", 64, 48)[:, :, ::-1])
    outcomes = restore_many(str(tree), str(tmp_path / "out"), "unsharp")
    assert [(Path(o.source).name, o.status) for o in outcomes] == [("x.jpg", "done"), ("x.png", "failed")]
    assert outcomes[1].exit_code == 10 and "is " in outcomes[1].message and "rename one of them" in outcomes[1].message
    restored = cv2.imread(str(tmp_path / "out" / "x.png"))[:, :, ::-1]
    chelsea, coffee = photo("chelsea", 64, 48).astype(float), photo("coffee", 64, 48).astype(float)
    assert np.abs(restored - chelsea).mean() < np.abs(restored - coffee).mean()  # the first one's output stays


def test_a_mismatch_message_stays_one_short_line_whatever_the_manifest_holds(finished, tmp_path):
    job_dir = _copy_job(finished, tmp_path)
    data = json.loads((job_dir / manifests.NAME).read_text())
    data["settings"]["injected\nsecond line" + "x" * 100_000] = 1
    (job_dir / manifests.NAME).write_text(json.dumps(data))
    with pytest.raises(JobMismatchError) as refused:
        _job(finished[0], tmp_path / "out.mkv", job_dir).plan()
    assert str(refused.value) == ("the job was started with other settings (unknown ones); use --restart to start "
                                  "over, or the same options to resume")
    data["settings"] = {**json.loads((finished[1] / manifests.NAME).read_text())["settings"], "chain": "other"}
    (job_dir / manifests.NAME).write_text(json.dumps(data))
    with pytest.raises(JobMismatchError, match=r"other settings \(chain\); use --restart"):
        _job(finished[0], tmp_path / "out.mkv", job_dir).plan()
