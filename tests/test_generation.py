import torch

from nextrl.models import load_model, load_tokenizer
from nextrl.rl.training import completion_logits
from nextrl.rollouts.generation import HFGenerateBackend, completion_mask


def test_completion_mask_keeps_tokens_up_to_and_including_first_eos():
    ids = torch.tensor([[5, 1, 7, 1], [5, 6, 7, 8], [1, 9, 9, 9]])
    expected = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]], dtype=torch.float32)
    assert torch.equal(completion_mask(ids, eos_token_id=1), expected)


def test_training_forward_reproduces_generation_with_left_padding(tiny_setup):
    """Greedy tokens from generate are the argmax of the training forward (same positions under left padding)."""
    tokenizer = load_tokenizer(tiny_setup["base"])
    model = load_model(tiny_setup["base"])
    backend = HFGenerateBackend(model, tokenizer, batch_size=8)
    rollouts = backend.generate(["1+2=", "7+8=", "1 + 5 + 3="], 1, 4, temperature=0.0)
    assert rollouts.prompt_mask[0, 0] == 0  # shorter prompts are left-padded
    with torch.no_grad():
        logits = completion_logits(model, rollouts)
    predicted = logits.argmax(dim=-1)
    mask = rollouts.completion_mask.bool()
    assert torch.equal(predicted[mask], rollouts.completion_ids[mask])
    assert rollouts.texts == [
        tokenizer.decode(row[: int(m.sum())]).replace("<eos>", "")
        for row, m in zip(
            rollouts.completion_ids, rollouts.completion_mask * (rollouts.completion_ids != tokenizer.eos_token_id)
        )
    ]
