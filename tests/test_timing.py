"""Stream time: the cost model, its profiles and files, the reasoner schedule and latency figures."""

from __future__ import annotations

import json

import pytest

from adasr_av.errors import AdasrError
from adasr_av.timing import (
    DEFAULT_WORDS_PER_MINUTE,
    PAPER_PROFILE,
    CostModel,
    CostModelClock,
    ReasonerSchedule,
    WallClock,
    answer_latency,
    chunk_overflows,
    lag,
    load_cost_model,
    overflow_by_chunk,
    speech_seconds,
    streaming_overflow,
)
from adasr_av.types import Event

COST = CostModel("test", prefill_base_s=0.1, prefill_per_token_s=0.01, decode_per_token_s=0.1)


def test_cost_model_prefill_and_decode():
    assert COST.prefill(10) == pytest.approx(0.2)  # 0.1 + 10 * 0.01
    assert COST.prefill(1) == pytest.approx(0.11)
    assert COST.prefill(0) == 0.0  # nothing to prefill costs nothing, not the base
    assert COST.decode(20) == pytest.approx(2.0)
    assert COST.decode(0) == 0.0


def test_paper_profile_decodes_at_the_paper_speed():
    assert PAPER_PROFILE.name == "paper"
    assert PAPER_PROFILE.decode_per_token_s == 56.25 / 1866
    assert PAPER_PROFILE.decode(1866) == pytest.approx(56.25)
    assert 1 / PAPER_PROFILE.decode_per_token_s == pytest.approx(33.1733, abs=1e-4)
    assert PAPER_PROFILE.prefill(100) == pytest.approx(0.02 + 100 * 0.0005)


def test_load_cost_model_by_name():
    assert load_cost_model("paper") is PAPER_PROFILE


def test_cost_model_file_round_trip(tmp_path):
    model = CostModel("h100-qwen3", 0.015, 0.0002, 0.012, model="Qwen/Qwen3-1.7B", device="H100", notes="n")
    path = tmp_path / "cost.json"
    model.save(path)
    saved = json.loads(path.read_text())
    assert saved == {
        "name": "h100-qwen3",
        "prefill_base_s": 0.015,
        "prefill_per_token_s": 0.0002,
        "decode_per_token_s": 0.012,
        "model": "Qwen/Qwen3-1.7B",
        "device": "H100",
        "notes": "n",
    }
    assert load_cost_model(path) == model
    assert load_cost_model(str(path)) == model


def test_cost_model_file_with_only_the_required_fields_and_extras(tmp_path):
    path = tmp_path / "cost.json"
    path.write_text(
        json.dumps(
            {
                "name": "min",
                "prefill_base_s": 0,
                "prefill_per_token_s": 0.001,
                "decode_per_token_s": 0.05,
                "calibrated_at": "2025-01-01",  # unknown fields are ignored
            }
        )
    )
    model = load_cost_model(path)
    assert model == CostModel("min", 0, 0.001, 0.05)
    assert (model.model, model.device, model.notes) == ("", "", "")
    assert model.prefill(10) == pytest.approx(0.01)


def load_error(path) -> str:
    with pytest.raises(AdasrError) as info:
        load_cost_model(path)
    return str(info.value)


def test_missing_cost_file(tmp_path):
    path = tmp_path / "nope.json"
    message = load_error(path)
    assert str(path) in message
    assert "no such file" in message
    assert "paper" in message  # names the built-in profiles


def test_bad_json_cost_file(tmp_path):
    path = tmp_path / "cost.json"
    path.write_text('{"name": "x",\n "prefill_base_s": }')
    message = load_error(path)
    assert str(path) in message
    assert "not valid JSON" in message
    assert "line 2" in message


def test_cost_file_not_an_object(tmp_path):
    path = tmp_path / "cost.json"
    path.write_text("[1, 2, 3]")
    message = load_error(path)
    assert str(path) in message
    assert "expected a JSON object" in message


FULL = {"name": "x", "prefill_base_s": 0.1, "prefill_per_token_s": 0.01, "decode_per_token_s": 0.1}


@pytest.mark.parametrize("field", list(FULL))
def test_cost_file_missing_field(tmp_path, field):
    path = tmp_path / "cost.json"
    path.write_text(json.dumps({k: v for k, v in FULL.items() if k != field}))
    message = load_error(path)
    assert str(path) in message
    assert f"missing field '{field}'" in message


@pytest.mark.parametrize("field", ["prefill_base_s", "prefill_per_token_s", "decode_per_token_s"])
@pytest.mark.parametrize("value", ["0.1", None, [0.1]])
def test_cost_file_non_number_field(tmp_path, field, value):
    path = tmp_path / "cost.json"
    path.write_text(json.dumps(FULL | {field: value}))
    message = load_error(path)
    assert str(path) in message
    assert f"field '{field}' must be a non-negative number" in message


def test_cost_file_boolean_field_is_not_a_number(tmp_path):
    path = tmp_path / "cost.json"
    path.write_text(json.dumps(FULL | {"decode_per_token_s": True}))
    with pytest.raises(AdasrError, match="decode_per_token_s"):
        load_cost_model(path)


# --- clocks --------------------------------------------------------------------------------------


def test_wall_clock_is_the_measured_time():
    clock = WallClock()
    assert clock.name == "wall"
    assert clock.duration(100, 5, 0.25) == 0.25
    assert clock.duration(0, 0, 1.5) == 1.5


def test_cost_model_clock_ignores_the_measured_time():
    clock = CostModelClock(COST)
    assert clock.name == "cost-model"
    assert clock.duration(10, 5, 99.0) == pytest.approx(0.1 + 0.1 + 0.5)
    assert clock.duration(0, 5, 99.0) == pytest.approx(0.5)
    assert clock.duration(10, 0, 0.0) == pytest.approx(0.2)
    assert clock.duration(0, 0, 3.0) == 0.0


# --- schedule and latency ------------------------------------------------------------------------


def test_schedule_begins_at_the_later_of_arrival_and_busy():
    schedule = ReasonerSchedule()
    assert schedule.run(1.0, 0.5) == pytest.approx((1.0, 1.5))  # idle: begins on arrival
    assert schedule.run(1.2, 0.5) == pytest.approx((1.5, 2.0))  # busy until 1.5
    assert schedule.run(3.0, 0.1) == pytest.approx((3.0, 3.1))  # idle again
    assert schedule.busy_until == pytest.approx(3.1)
    assert schedule.run(0.0, 0.0) == pytest.approx((3.1, 3.1))


def test_answer_latency_and_lag():
    assert answer_latency(10.5, 8.0) == pytest.approx(2.5)
    assert answer_latency(8.0, 8.0) == 0.0
    assert lag(3.8, 3.2) == pytest.approx(0.6)
    assert lag(4.8, 4.8) == 0.0


def test_streaming_overflow_hand_example():
    # Chunk 0 runs 0.3 s into chunk 1's arrival, chunk 1 ends before chunk 2 arrives and
    # chunk 2 runs 0.2 s into chunk 3's; the last chunk's done time never counts.
    t_avail = [1.6, 3.2, 4.8, 6.4]
    t_done = [3.5, 4.0, 6.6, 100.0]
    assert streaming_overflow(t_done, t_avail) == pytest.approx(0.3 + 0.0 + 0.2)
    assert streaming_overflow([2.0, 4.0, 5.0], [1.6, 3.2, 4.8]) == 0.0
    assert streaming_overflow([9.0], [1.0]) == 0.0
    assert streaming_overflow([], []) == 0.0
    with pytest.raises(ValueError):  # one done time per available chunk
        streaming_overflow([2.0, 4.0], [1.6, 3.2, 4.8])


def test_chunk_overflows_by_hand():
    """Each chunk's share of the overflow; the last chunk has no next arrival and overflows nothing."""
    t_avail = [1.6, 3.2, 4.8, 6.4]
    t_done = [3.5, 4.0, 6.6, 100.0]
    assert chunk_overflows(t_done, t_avail) == pytest.approx([0.3, 0.0, 0.2, 0.0])
    assert sum(chunk_overflows(t_done, t_avail)) == streaming_overflow(t_done, t_avail)
    assert chunk_overflows([], []) == []
    with pytest.raises(ValueError):
        chunk_overflows([2.0], [1.6, 3.2])


def test_overflow_by_chunk_reads_a_runs_events():
    """done_i is the end of chunk i's prefill and unit; an empty chunk got no work and is no arrival."""
    events = [
        Event("chunk", "a", 0, 5, 1.6, 1.6, 1.7),
        Event("think", "x", 0, 9, 1.6, 1.7, 3.5),  # runs 0.3 s into chunk 2's arrival
        Event("chunk", "", 1, 0, 2.0, 3.5, 3.5, {"empty": True}),
        Event("chunk", "b", 2, 5, 3.2, 3.5, 3.6),
        Event("skip", "", 2, 1, 3.2, 3.6, 3.7),
        Event("chunk", "c", 3, 5, 4.8, 4.8, 4.9),
        Event("think", "y", 3, 30, 4.8, 4.9, 9.0),  # the last chunk: nothing arrives after it
        Event("deep", "d", None, 4, 4.8, 9.0, 9.2),
    ]
    assert overflow_by_chunk(events) == pytest.approx({0: 0.3, 2: 0.0, 3: 0.0})


def test_whole_schedule_by_the_design_formula():
    """Three chunks (10 tokens each) with units of 20, 0 and 30 tokens, then stream end (1 token)
    and 25 tokens of deep reasoning and answer, on COST (c_p 0.1, s_p 0.01, s_d 0.1)."""
    clock, schedule = CostModelClock(COST), ReasonerSchedule()
    t_avail = [1.6, 3.2, 4.8]
    begins, dones = [], []
    for a, unit_tokens in zip(t_avail, [20, 0, 30], strict=True):
        begin, done = schedule.run(a, clock.duration(10, unit_tokens, 0.0))
        begins.append(begin)
        dones.append(done)
    # chunk 0: 1.6 + (0.2 + 2.0) = 3.8; chunk 1: max(3.2, 3.8) + 0.2 = 4.0; chunk 2: 4.8 + 3.2 = 8.0
    assert begins == pytest.approx([1.6, 3.8, 4.8])
    assert dones == pytest.approx([3.8, 4.0, 8.0])
    assert [lag(b, a) for b, a in zip(begins, t_avail, strict=True)] == pytest.approx([0.0, 0.6, 0.0])
    assert streaming_overflow(dones, t_avail) == pytest.approx(0.6)
    stream_end = t_avail[-1]
    begin_a, done_a = schedule.run(stream_end, clock.duration(1, 25, 0.0))
    assert begin_a == pytest.approx(8.0)
    assert done_a == pytest.approx(8.0 + 0.11 + 2.5)
    assert answer_latency(done_a, stream_end) == pytest.approx(5.81)


# --- speaking rate -------------------------------------------------------------------------------


def test_speech_seconds():
    assert DEFAULT_WORDS_PER_MINUTE == 150.0
    assert speech_seconds(4) == pytest.approx(1.6)
    assert speech_seconds(150) == pytest.approx(60.0)
    assert speech_seconds(0) == 0.0
    assert speech_seconds(3, 120) == pytest.approx(1.5)
    assert speech_seconds(10, 60.0) == pytest.approx(10.0)


@pytest.mark.parametrize("rate", [0, -1, -150.0])
def test_speech_seconds_rejects_a_non_positive_rate(rate):
    with pytest.raises(AdasrError, match="words per minute must be positive"):
        speech_seconds(4, rate)
