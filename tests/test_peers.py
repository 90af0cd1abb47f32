"""The line a distributed run ends with when a peer is lost, from gloo's own error messages: the host
named, and how it was lost (its process ended, or the host does not answer)."""

from __future__ import annotations

import socket

from dogbreed.training.peers import host_answers, is_peer_failure, lost_peer_line

# gloo's messages (torch 2.14), as a survivor saw them in a replayed 2-host job.
RESET = RuntimeError(
    "[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:545] Read error [127.0.0.1]:26330: "
    "Connection reset by peer. This is typically caused by a remote worker hanging."
)
TIMED_OUT = RuntimeError(
    "[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting "
    "20000ms for recv operation to complete"
)


def line(exc, answers, hosts=("algo-1", "localhost")):
    return lost_peer_line(exc, list(hosts), "algo-1", 20, answers)


def test_a_peer_whose_process_died_is_named_and_said_to_answer():
    text = line(RESET, lambda host: True)
    assert text == (
        "ConnectionError: lost host localhost (127.0.0.1): its training process ended (the host still "
        "answers; its own log says why); training stopped"
    )


def test_a_silent_peer_that_does_not_answer_is_an_instance_gone():
    text = line(TIMED_OUT, lambda host: False)
    assert text is not None and text.startswith(
        "ConnectionError: lost host localhost (127.0.0.1): it does not"
    )
    assert "trainer.strategy.peer_timeout_s=20" in text


def test_a_silent_peer_whose_host_answers_is_said_to_be_stuck():
    text = line(TIMED_OUT, lambda host: True)
    assert text is not None and "no answer from the training processes of localhost" in text


def test_other_failures_and_single_host_runs_are_left_alone():
    assert line(ValueError("bad value"), lambda host: False) is None
    assert line(TIMED_OUT, lambda host: False, hosts=("algo-1", "algo-1")) is None
    # The barrier of a checkpoint saved while the failure is handled fails too: still the peer's failure.
    try:
        try:
            raise TIMED_OUT
        except RuntimeError:
            raise RuntimeError("Application timeout caused pair closure") from None
    except RuntimeError as chained:
        assert is_peer_failure(chained)


def test_a_host_answers_when_it_refuses_a_connection():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, not listening: a refusal
        assert host_answers("127.0.0.1", port, seconds=2)
