"""Ids never repeat across simulator processes, even with the same seed (the real API's never do,
and clients keep them: a repeated ``webhook-id`` would be dropped as a duplicate delivery)."""

from openai import OpenAI

from runs_simulator.testing import RunningSimulator


def test_two_simulators_with_one_seed_hand_out_different_ids():
    ids = []
    for _ in range(2):
        with RunningSimulator(seed=42) as sim:
            client = OpenAI(base_url=sim.base_url, api_key="sk-sim", max_retries=0)
            ids.append(client.responses.create(model="m", input="hi", background=True).id)
            ids.append(client.beta.threads.create().id)
    assert len(set(ids)) == 4
