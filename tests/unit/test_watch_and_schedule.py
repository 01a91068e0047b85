"""graft watch (fingerprint against the champion, loop and --once behaviour) and schedules
(the schedule YAML, the Kubeflow Schedule, the crontab line and its idempotent install)."""

from __future__ import annotations

import os
import stat
import sys
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest

from graft.config import load_config
from graft.errors import ConfigError, DataError, GraftError, ValidationFailed
from graft.schedule import (
    CRONTAB_COMMAND_ENV,
    ScheduleConfig,
    crontab_command,
    crontab_line,
    install_crontab_line,
    load_schedule,
)
from graft.config import WatchConfig
from graft.data.listing import DataVersion
from graft.watch import RegistryState, Status, check_target, compare, watch, watch_once
from tests.e2e.helpers import graft_in_process
from tests.image_cases import image_folder, noise_pixels, save_image

REPO = Path(__file__).resolve().parents[2]
OLD, NEW = "a" * 64, "b" * 64


# --- the decision of a check -------------------------------------------------------------------


def test_unchanged_when_the_champion_was_trained_on_the_same_data():
    check = compare("data/", "m", OLD, RegistryState("3", {"1": NEW, "3": OLD}))
    assert check.status is Status.UNCHANGED and not check.needs_training
    assert "unchanged" in check.line() and "champion v3" in check.line()


def test_changed_when_the_fingerprint_differs_from_the_champions():
    check = compare("data/", "m", NEW, RegistryState("3", {"3": OLD}))
    assert check.status is Status.CHANGED and check.needs_training
    assert f"changed from {OLD[:12]} (champion v3) to {NEW[:12]}" in check.line()


def test_no_champion_trains():
    check = compare("data/", "m", NEW, RegistryState(None, {"1": OLD}))
    assert check.status is Status.NO_CHAMPION and check.needs_training
    assert "no champion for m" in check.line()


def test_no_champion_but_a_rejected_version_on_this_data_is_not_retrained():
    check = compare("data/", "m", NEW, RegistryState(None, {"1": NEW}))
    assert check.status is Status.ALREADY_TRAINED and not check.needs_training
    assert "no champion for m" in check.line() and "v1 was already trained on it" in check.line()


def test_a_champion_without_the_tag_counts_as_changed():
    check = compare("data/", "m", NEW, RegistryState("2", {}))
    assert check.status is Status.CHANGED and "untagged" in check.line()


def test_data_a_rejected_version_was_trained_on_is_not_retrained():
    check = compare("data/", "m", NEW, RegistryState("3", {"3": OLD, "4": NEW, "6": NEW, "5": OLD}))
    assert check.status is Status.ALREADY_TRAINED and not check.needs_training
    assert check.trained_version == "6" and "v6 was already trained on it and not promoted" in check.line()


# --- the digest memo: unchanged files are not read again ----------------------------------------


def _memo_pass(memo_dir: Path, root: Path) -> tuple[str, int]:
    from graft.data.catalog import read_catalog
    from graft.data.digest_memo import DigestMemo
    from graft.data.ingest import catalog_fingerprint

    memo = DigestMemo(memo_dir, root)
    fingerprint = catalog_fingerprint(read_catalog(root, "t"), digest=memo.digest)[0]
    memo.save()
    return fingerprint, memo.reads


def test_memo_skips_unchanged_files_and_keeps_the_content_fingerprint(tmp_path, monkeypatch):
    from graft.data import digest_memo
    from graft.data.sources import data_fingerprint

    monkeypatch.setattr(digest_memo, "RECENT_SECONDS", 0.0)
    root = tmp_path / "target"
    image_folder(root, {"cat": 3, "dog": 3})
    plain = data_fingerprint(str(root))
    assert _memo_pass(tmp_path / "memo", root) == (plain, 6)
    assert _memo_pass(tmp_path / "memo", root) == (plain, 0)
    assert data_fingerprint(str(root), memo_dir=tmp_path / "memo") == plain


def test_memo_sees_a_same_size_rewrite_even_with_the_old_mtime_put_back(tmp_path, monkeypatch):
    from graft.data import digest_memo

    monkeypatch.setattr(digest_memo, "RECENT_SECONDS", 0.0)
    root = tmp_path / "target"
    files = image_folder(root, {"cat": 2, "dog": 2})
    before, _ = _memo_pass(tmp_path / "memo", root)
    victim = files[0]
    old = victim.stat()
    data = bytearray(victim.read_bytes())
    data[-13] ^= 0xFF  # a byte of the image data chunk's CRC: same size, different bytes
    import time

    time.sleep(0.05)  # past the filesystem clock's tick
    victim.write_bytes(bytes(data))
    os.utime(victim, ns=(old.st_atime_ns, old.st_mtime_ns))  # as `touch -d` or `rsync -t` would leave it
    assert victim.stat().st_size == old.st_size and victim.stat().st_mtime_ns == old.st_mtime_ns
    after, reads = _memo_pass(tmp_path / "memo", root)
    assert reads == 1 and after != before


def test_memo_does_not_remember_files_written_just_now(tmp_path):
    root = tmp_path / "target"
    image_folder(root, {"cat": 2, "dog": 2})
    assert _memo_pass(tmp_path / "memo", root)[1] == 4
    assert _memo_pass(tmp_path / "memo", root)[1] == 4  # within RECENT_SECONDS of their write


# --- one check, the loop -----------------------------------------------------------------------


class FakeTrain:
    def __init__(self, error: GraftError | None = None):
        self.calls, self.error = [], error

    def __call__(self, config):
        self.calls.append(config.data.target)
        if self.error:
            raise self.error
        promotion = SimpleNamespace(model_name=config.registry.model_name, registered_version="7", promoted=True, reason="")
        return SimpleNamespace(run_name="graft-test-run", seconds=1.0, promotion=promotion)


def _config(target: str = "data/"):
    return load_config(None, {"data": {"target": target}, "registry": {"model_name": "unit-watch"}})


def _fixed(fingerprint: str, champion: str | None, tags: dict[str, str]):
    return {"read": lambda spec: DataVersion(fingerprint, None), "registry": lambda name: RegistryState(champion, tags)}


def test_watch_once_trains_nothing_on_unchanged_data(tmp_path):
    train, lines = FakeTrain(), []
    check = watch_once(_config(), train, tmp_path, lambda line, err=False: lines.append(line), **_fixed(OLD, "1", {"1": OLD}))
    assert check.status is Status.UNCHANGED and train.calls == []
    assert len(lines) == 1 and "unchanged" in lines[0]


def test_watch_once_trains_on_changed_data_and_reports_the_version(tmp_path):
    train, lines = FakeTrain(), []
    watch_once(_config(), train, tmp_path, lambda line, err=False: lines.append(line), **_fixed(NEW, "1", {"1": OLD}))
    assert train.calls == ["data/"]
    assert "changed from" in lines[0] and "registered unit-watch v7 (promoted to champion)" in lines[1]


def test_once_raises_the_runs_error(tmp_path):
    train = FakeTrain(ValidationFailed("--target data/: 3 files cannot be decoded"))
    with pytest.raises(ValidationFailed):
        watch(_config(), train, tmp_path, interval=1, once=True, echo=lambda *a, **k: None, **_fixed(NEW, None, {}))


def test_loop_prints_a_failed_run_and_keeps_watching_without_rerunning_the_same_data(tmp_path):
    train = FakeTrain(ValidationFailed("--target data/: 3 files cannot be decoded"))
    lines, sleeps = [], []
    watch(
        _config(), train, tmp_path, interval=30, once=False, echo=lambda line, err=False: lines.append((line, err)),
        sleep=sleeps.append, max_checks=3, **_fixed(NEW, "1", {"1": OLD}),
    )
    assert train.calls == ["data/"]  # the second and third checks see the same bad data
    assert ("error: --target data/: 3 files cannot be decoded", True) in lines
    assert sum("already failed" in line for line, _ in lines) == 2
    assert sleeps == [30, 30]


def test_a_second_watch_of_the_same_model_skips_while_the_first_holds_the_lock(tmp_path):
    from graft.watch import watch_lock

    train, lines = FakeTrain(), []
    with watch_lock(tmp_path, "unit-watch") as first:
        assert first
        assert watch_once(_config(), train, tmp_path, lambda line, err=False: lines.append(line), **_fixed(NEW, None, {})) is None
    assert train.calls == [] and "skipping this check" in lines[0]


def test_watch_skips_while_a_graft_run_of_the_model_holds_the_run_lock(tmp_path):
    from graft.registry.locking import run_lock

    train, lines = FakeTrain(), []
    echo = lambda line, err=False: lines.append(line)  # noqa: E731
    with run_lock(tmp_path, "unit-watch", exclusive=False) as running:  # what `graft run` holds while training
        assert running
        assert watch_once(_config(), train, tmp_path, echo, **_fixed(NEW, None, {})) is None
    assert train.calls == [] and "a graft run of unit-watch is training; skipping" in lines[0]

    def train_like_graft_run(config):  # the run a watch starts takes the run lock too, in the watch's process
        with run_lock(tmp_path, "unit-watch", exclusive=False) as held:
            assert held
            with run_lock(tmp_path, "unit-watch", exclusive=False, wait=0) as other:
                assert other  # re-entrant only while the watch holds it
        return FakeTrain()(config)

    assert watch_once(_config(), train_like_graft_run, tmp_path, echo, **_fixed(NEW, None, {})).needs_training
    with run_lock(tmp_path, "unit-watch", exclusive=False) as run_again:
        assert run_again  # the watch let go of it


def test_watch_cli_on_a_missing_target_is_one_error_line(tmp_path):
    result = graft_in_process("watch", "--once", "--target", str(tmp_path / "absent"))
    assert result.returncode == DataError.exit_code
    assert [line for line in result.stderr.splitlines() if line.startswith("error: ")] == [
        f"error: --target {tmp_path / 'absent'}: no such file or folder; give builtin:mnist, builtin:digits, an ImageFolder folder or a .csv/.parquet manifest"
    ]


# --- the schedule file -------------------------------------------------------------------------


def _schedule(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "schedule.yaml"
    path.write_text(text)
    return path


def test_the_shipped_schedule_is_valid():
    schedule = load_schedule(REPO / "configs" / "schedule.yaml")
    assert schedule.cron_expression == "0 3 * * *" and schedule.catchup is False


def test_schedule_with_times_becomes_a_zenml_schedule(tmp_path):
    path = _schedule(tmp_path, "cron_expression: '*/15  6-18 * * 1-5'\nstart_time: 2026-12-01T00:00:00Z\nend_time: 2027-01-01T00:00:00+01:00\n")
    schedule = load_schedule(path)
    assert schedule.cron_expression == "*/15 6-18 * * 1-5"
    zenml = schedule.zenml_schedule()
    assert zenml.cron_expression == "*/15 6-18 * * 1-5" and zenml.interval_second is None and zenml.catchup is False
    assert zenml.start_time == datetime(2026, 12, 1, tzinfo=timezone.utc)
    assert schedule.zenml_schedule(seconds_field=True).cron_expression == "0 */15 6-18 * * 1-5"  # Kubeflow's six fields


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("cron_expression: '61 3 * * *'\n", ["cron_expression", "not a valid cron expression"]),
        ("cron_expression: 'every day'\n", ["cron_expression", "five-field"]),
        ("cron_expression: '0 0 3 * * *'\n", ["cron_expression", "five-field"]),
        ("cron_expression: '0 3 * * *'\ninterval_second: 3600\n", ["interval_second", "unknown key"]),
        ("cron_expresion: '0 3 * * *'\n", ["cron_expresion", "unknown key"]),
        ("catchup: false\n", ["cron_expression", "missing"]),
        ("cron_expression: '0 3 * * *'\nstart_time: 2026-12-01T00:00:00\n", ["start_time", "timezone"]),
        (
            "cron_expression: '0 3 * * *'\nstart_time: 2027-01-01T00:00:00Z\nend_time: 2026-01-01T00:00:00Z\n",
            ["end_time must be after start_time"],
        ),
        ("- 0 3 * * *\n", ["top level must be a mapping"]),
    ],
)
def test_bad_schedule_files_name_the_key(tmp_path, text, needles):
    path = _schedule(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_schedule(path)
    message = str(error.value)
    assert message.startswith(str(path)) and "\n" not in message
    for needle in needles:
        assert needle in message


def test_scheduled_options_for_kubeflow_use_six_fields_and_no_cache():
    from pipelines.runner import scheduled_options

    stack = SimpleNamespace(orchestrator=SimpleNamespace(flavor="kubeflow"))
    with mock.patch("zenml.client.Client", return_value=SimpleNamespace(active_stack=stack)):
        options = scheduled_options(ScheduleConfig(cron_expression="30 2 * * 0"))
    assert options["enable_cache"] is False
    assert options["schedule"].cron_expression == "0 30 2 * * 0"


def test_run_with_schedule_but_no_orchestration_points_to_graft_schedule():
    result = graft_in_process("run", "--schedule", str(REPO / "configs" / "schedule.yaml"))
    assert result.returncode == ConfigError.exit_code
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "--schedule needs --orchestration" in errors[0] and "graft schedule" in errors[0]
    assert "Traceback" not in result.stderr


def test_run_with_orchestration_passes_the_validated_schedule_to_the_runner(tmp_path):
    orchestration = tmp_path / "run.yaml"
    orchestration.write_text("settings: {}\n")
    with mock.patch("pipelines.runner.run_transfer", return_value=None) as run_transfer:
        result = graft_in_process("run", "--orchestration", str(orchestration), "--schedule", str(REPO / "configs" / "schedule.yaml"))
    assert result.returncode == 0, result.stderr
    kwargs = run_transfer.call_args.kwargs
    assert kwargs["orchestration"] == orchestration and kwargs["schedule"].cron_expression == "0 3 * * *"
    assert "Scheduled" in result.stdout


# --- the crontab line and its install ----------------------------------------------------------


def test_crontab_line_runs_watch_once_from_the_checkout_and_logs(tmp_path):
    line = crontab_line(
        "0 3 * * *", checkout=Path("/srv/graft"), log_file=tmp_path / "home" / "logs" / "watch.log", model_name="digits",
        graft=["/srv/graft/.venv/bin/graft"], graft_home=tmp_path / "home", target="/data/my images",
        config=Path("/srv/graft/configs/transfer.yaml"),
    )
    assert line.startswith("0 3 * * * mkdir -p ")
    assert "&& cd /srv/graft && GRAFT_HOME=" in line
    assert "/srv/graft/.venv/bin/graft watch --once --model-name digits --target '/data/my images' --config /srv/graft/configs/transfer.yaml" in line
    assert f">> {tmp_path / 'home' / 'logs' / 'watch.log'} 2>&1" in line
    assert line.endswith("# graft-watch digits") and "\n" not in line


def test_percent_signs_are_escaped_for_cron():
    line = crontab_line("0 3 * * *", Path("/srv/100%"), Path("/tmp/logs/watch.log"), "m", graft=["graft"])
    assert "/srv/100\\%" in line and "100%" not in line.replace("100\\%", "")


@pytest.fixture
def fake_crontab(tmp_path, monkeypatch):
    """A ``crontab`` that keeps the table in a file: ``-l`` prints it (or fails like cron with none), ``-`` replaces it."""
    table = tmp_path / "table"
    script = tmp_path / "fake-crontab"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "-l" ]; then [ -f "{table}" ] || {{ echo "no crontab for tester" >&2; exit 1; }}; cat "{table}"; exit 0; fi\n'
        f'if [ "$1" = "-" ]; then cat > "{table}"; exit 0; fi\n'
        "exit 2\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv(CRONTAB_COMMAND_ENV, str(script))
    return table


def test_install_adds_the_line_once_and_replaces_an_earlier_one(fake_crontab):
    first = crontab_line("0 3 * * *", Path("/srv/graft"), Path("/tmp/l/watch.log"), "digits", graft=["graft"])
    assert install_crontab_line(first, "digits") == []
    fake_crontab.write_text(fake_crontab.read_text() + "15 * * * * backup.sh\n")
    assert install_crontab_line(first, "digits") == [first]
    second = crontab_line("*/30 * * * *", Path("/srv/graft"), Path("/tmp/l/watch.log"), "digits", graft=["graft"])
    other_model = crontab_line("0 4 * * *", Path("/srv/graft"), Path("/tmp/l/watch.log"), "letters", graft=["graft"])
    install_crontab_line(second, "digits")
    install_crontab_line(other_model, "letters")
    assert fake_crontab.read_text().splitlines() == ["15 * * * * backup.sh", second, other_model]


def test_schedule_cli_installs_with_the_venvs_graft_and_graft_home(fake_crontab, tmp_path):
    target = tmp_path / "images"
    image_folder(target, {"a": 1, "b": 1})
    for _ in range(2):
        result = graft_in_process("schedule", "--target", str(target), "--install", "--model-name", "unit-schedule")
        assert result.returncode == 0, result.stderr
    lines = fake_crontab.read_text().splitlines()
    assert len(lines) == 1 and lines[0] == result.stdout.strip()
    assert f"cd {REPO} && GRAFT_HOME={os.environ['GRAFT_HOME']} " in lines[0]
    assert f"watch --once --model-name unit-schedule --target {target}" in lines[0]
    assert str(Path(sys.executable).parent) in lines[0] and "/logs/watch.log 2>&1" in lines[0]


def test_missing_crontab_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(CRONTAB_COMMAND_ENV, "/nonexistent/crontab")
    with pytest.raises(GraftError, match="not found: install cron"):
        crontab_command()


def test_ctrl_c_stops_the_watch_loop_with_exit_130(tmp_path):
    image_folder(tmp_path / "images", {"a": 1, "b": 1})
    with mock.patch("graft.watch.watch_once", side_effect=KeyboardInterrupt):
        result = graft_in_process("watch", "--target", str(tmp_path / "images"), "--interval", "5")
    assert result.returncode == 130 and "interrupted" in result.stderr and "Traceback" not in result.stderr
    assert "every 5 s; Ctrl-C stops" in result.stderr


# --- the watch policy: settle, thresholds, relabelling, storms -------------------------------------


def _policy_check(root: Path, listings, champion_fingerprint: str | None, policy: WatchConfig, now_ns=None):
    """A check of ``root`` against a registry whose champion v1 was trained on ``champion_fingerprint``."""
    import time as clock

    tags = {"1": champion_fingerprint} if champion_fingerprint else {}
    return check_target(
        str(root), "unit-policy", policy=policy, listings=listings,
        registry=lambda name: RegistryState("1" if champion_fingerprint else None, tags),
        now_ns=now_ns or clock.time_ns,
    )


@pytest.fixture
def trained(tmp_path):
    """A folder of 20 images whose listing a run trained on (stored as a run's ingest stores it)."""
    from graft.data.listing import ListingStore, read_data_version

    root = tmp_path / "target"
    image_folder(root, {"cat": 10, "dog": 10})
    listings = ListingStore(tmp_path / "listings")
    fingerprint = read_data_version(str(root), "target", store=listings).fingerprint
    return root, listings, fingerprint


def test_settle_holds_a_change_until_the_target_is_quiet(trained):
    import time as clock

    root, listings, fingerprint = trained
    save_image(root / "cat" / "new.png", noise_pixels(4242))
    held = _policy_check(root, listings, fingerprint, WatchConfig(settle_seconds=60))
    assert held.status is Status.HELD and not held.needs_training
    assert "held back by watch.settle_seconds=60" in held.line() and "1 added" in held.line()
    later = _policy_check(root, listings, fingerprint, WatchConfig(settle_seconds=60), now_ns=lambda: clock.time_ns() + 61 * 10**9)
    assert later.status is Status.CHANGED and later.needs_training
    no_champion = _policy_check(root, listings, None, WatchConfig(settle_seconds=60))
    assert no_champion.status is Status.HELD, "a first run waits for a settled target too"


def test_small_changes_accumulate_until_worth_a_run(trained):
    root, listings, fingerprint = trained
    policy = WatchConfig(settle_seconds=0, min_changed_files=3)
    for index in range(2):
        save_image(root / "dog" / f"extra{index}.png", noise_pixels(5000 + index))
    held = _policy_check(root, listings, fingerprint, policy)
    assert held.status is Status.HELD and held.change.added == 2
    assert "watch.min_changed_files=3: 2 file(s) changed" in held.line()
    (root / "cat" / sorted(os.listdir(root / "cat"))[0]).unlink()
    enough = _policy_check(root, listings, fingerprint, policy)
    assert enough.status is Status.CHANGED and (enough.change.added, enough.change.removed) == (2, 1)
    fraction = _policy_check(root, listings, fingerprint, WatchConfig(settle_seconds=0, min_changed_fraction=0.25))
    assert fraction.status is Status.HELD and "watch.min_changed_fraction=0.25: 3 of 20 files (15.0%)" in fraction.line()


def test_a_relabelled_file_counts_as_a_change(trained):
    root, listings, fingerprint = trained
    moved = sorted((root / "cat").iterdir())[0]
    moved.rename(root / "dog" / f"from-cat-{moved.name}")
    check = _policy_check(root, listings, fingerprint, WatchConfig(settle_seconds=0))
    assert check.status is Status.CHANGED and check.change.relabelled == 1 and check.change.files == 1
    assert "1 relabelled" in check.line()
    # Renamed within its class: the same image with the same label, nothing worth a run.
    renamed = sorted((root / "cat").iterdir())[0]
    renamed.rename(root / "cat" / f"renamed-{renamed.name}")
    assert _policy_check(root, listings, fingerprint, WatchConfig(settle_seconds=0)).change.files == 1


def test_a_storm_of_changes_starts_one_run(tmp_path):
    """100 single-file changes within 60 s, a check every 5 s, settle 10 s: exactly one run, after the storm."""
    second = 10**9
    clock = {"now": 0}
    data = {"version": 0, "changed_at": 0}
    registry = {"champion": None, "tags": {}}

    def read(spec):
        return DataVersion(f"{data['version']:064x}", None, data["changed_at"])

    def train(config):
        version = str(len(registry["tags"]) + 1)
        registry["tags"][version] = f"{data['version']:064x}"
        registry["champion"] = version
        return SimpleNamespace(run_name="r", seconds=1.0, promotion=SimpleNamespace(model_name="m", registered_version=version, promoted=True, reason=""))

    runs = []
    config = load_config(None, {"registry": {"model_name": "unit-storm"}, "watch": {"settle_seconds": 10}})
    for tick in range(0, 120 * second, second // 10):  # 120 s in 0.1 s steps
        clock["now"] = tick
        if tick < 60 * second and tick % (6 * second // 10) == 0:  # a file every 0.6 s: 100 changes
            data["version"] += 1
            data["changed_at"] = tick + 1
        if tick % (5 * second) == 0:
            check = watch_once(
                config, train, tmp_path, lambda *a, **k: None, read=read,
                registry=lambda name: RegistryState(registry["champion"], dict(registry["tags"])), now_ns=lambda: clock["now"],
            )
            runs += [tick] if check.needs_training else []
    assert data["version"] == 100
    assert len(runs) == 1 and runs[0] >= 60 * second
    assert registry["tags"] == {"1": f"{100:064x}"}
