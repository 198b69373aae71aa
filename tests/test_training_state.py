"""A run folder across restarts, without a model: the log cut back to the checkpoint, the config
checked against the checkpoint's (the trainers' own resume tests are in test_training.py and
test_hrpo_trainer.py)."""

from __future__ import annotations

import json

import pytest

from adasr_av.errors import AdasrError
from adasr_av.hrpo.trainer import HRPOConfig
from adasr_av.training.run_folder import config_changes, keep_log_until, start_run
from adasr_av.training.sft import SFTConfig


def test_the_log_keeps_the_steps_up_to_the_checkpoint_and_the_lines_without_one(tmp_path):
    log = tmp_path / "log.jsonl"
    lines = ['{"step": 1}', '{"note": "started"}', '{"step": 2, "valid_loss": 1.0}', '{"step": 3}', "[4]"]
    log.write_text("\n".join(lines) + '\n{"step": 4}\n{"step": 5, "lo')  # the kill cut the last line
    keep_log_until(log, 2)
    assert log.read_text().splitlines() == [*lines[:3], "[4]"]
    keep_log_until(log, 0)
    assert log.read_text().splitlines() == ['{"note": "started"}', "[4]"]


def test_a_log_with_nothing_to_drop_is_left_alone(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 1}\n{"step": 2}\n')
    inode = log.stat().st_ino
    keep_log_until(log, 2)
    assert log.stat().st_ino == inode  # not rewritten
    keep_log_until(tmp_path / "none.jsonl", 3)
    assert not (tmp_path / "none.jsonl").exists()


def test_config_changes_name_dotted_keys_and_let_the_run_length_change():
    saved = {"train": {"lr": 0.0005, "max_steps": 10, "save_every": 2}, "model": {"targets": ["q"]}}
    new = {"train": {"lr": 0.001, "max_steps": 20, "save_every": 5}, "model": {"targets": ["q", "k"]}}
    assert config_changes(saved, new) == ["train.lr 0.0005 -> 0.001", 'model.targets ["q"] -> ["q", "k"]']
    assert config_changes(saved, saved) == []
    assert config_changes({"train": {}}, {"train": {"seed": 1}}) == ["train.seed absent -> 1"]


def _checkpoint(run, step: int) -> None:
    folder = run / "checkpoints" / f"step-{step}"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps({"step": step}))


@pytest.mark.parametrize("cls", [SFTConfig, HRPOConfig])
def test_a_resume_checks_the_config_and_a_fresh_start_writes_it(tmp_path, cls):
    run = tmp_path / "runs" / "x"
    config = cls()
    config.train.output, config.train.lr = str(run), 0.0005
    start_run(run, config)
    written = (run / "config.json").read_text()
    config.train.lr = 0.001
    start_run(run, config)  # no checkpoint yet: a fresh start, the new config is the run's
    assert json.loads((run / "config.json").read_text())["train"]["lr"] == 0.001
    config.train.lr = 0.0005
    start_run(run, config)
    _checkpoint(run, 4)
    config.train.lr, config.model.lora = 0.001, True
    with pytest.raises(AdasrError) as err:
        start_run(run, config)
    assert str(err.value).startswith(
        f"{run}: resuming with a config that differs from the checkpoint's (checkpoints/step-4): "
        "model.lora false -> true, train.lr 0.0005 -> 0.001 (start a new output folder, or put the old "
        "values back; a resume may change train.max_steps, "
    )
    assert (run / "config.json").read_text() == written
    config.train.lr, config.model.lora = 0.0005, False
    config.train.max_steps, config.train.max_minutes = 500, 30.0
    start_run(run, config)
    saved = json.loads((run / "config.json").read_text())["train"]
    assert (saved["max_steps"], saved["max_minutes"]) == (500, 30.0)  # the run as it now goes on


def test_an_option_the_code_gained_since_the_run_began_keeps_it_resumable(tmp_path):
    """A run whose config.json predates an option resumes when the option is at its default, and
    not when it is set to something else (here SFT's data.video_fraction, added later)."""
    run = tmp_path / "runs" / "x"
    config = SFTConfig()
    config.train.output = str(run)
    start_run(run, config)
    saved = json.loads((run / "config.json").read_text())
    del saved["data"]["video_fraction"]  # as the run's config was written before the option
    (run / "config.json").write_text(json.dumps(saved))
    _checkpoint(run, 2)
    start_run(run, config)  # the default: the same run
    config.data.video_fraction = 0.4
    with pytest.raises(AdasrError, match=r"data\.video_fraction 0\.0 -> 0\.4"):
        start_run(run, config)
