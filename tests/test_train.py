"""Training: answer-only loss masking, a real LoRA run on a tiny random model, the accelerate path."""
import json
import sys

import pytest

from tasks.core.settings import LoraSettings, TrainingSettings
from tasks.core.records import Target
from tasks.engines.lora import IGNORE, accelerate_command, answer_only_loss, encode_target, total_steps, train_adapter

MSGS = [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "2+2 = 4. The answer is: 4"}]


def test_only_answer_tokens_carry_labels(bundled_tokenizer):
    enc = encode_target(bundled_tokenizer, MSGS, max_len=512)
    labelled = [t for t, lab in zip(enc["input_ids"], enc["labels"]) if lab != IGNORE]
    text = bundled_tokenizer.decode(labelled)
    assert text.startswith("2+2 = 4. The answer is: 4") and "What is" not in text
    assert enc["labels"][0] == IGNORE and len(enc["input_ids"]) == len(enc["labels"])
    # the labelled part starts exactly where the generation prompt ends
    prompt = bundled_tokenizer.apply_chat_template(MSGS[:1], add_generation_prompt=True, tokenize=False)
    assert enc["labels"].index(next(x for x in enc["labels"] if x != IGNORE)) == len(
        bundled_tokenizer(prompt, add_special_tokens=False)["input_ids"])


def test_too_long_examples_are_cut_or_dropped(bundled_tokenizer):
    assert len(encode_target(bundled_tokenizer, MSGS, max_len=40)["input_ids"]) <= 40
    assert encode_target(bundled_tokenizer, MSGS, max_len=17) is None  # the prompt alone does not fit


def test_total_steps():
    s = TrainingSettings(batch_size=4, grad_accum=2, epochs=2)
    assert total_steps(17, s) == 6 and total_steps(17, s.model_copy(update={"max_steps": 3})) == 3


def test_lora_training_writes_a_peft_adapter(tiny_model_dir, tmp_path):
    targets = [Target(example_id=str(i), source="gold", messages=MSGS) for i in range(6)]
    stats = train_adapter(tiny_model_dir, targets, LoraSettings(), TrainingSettings(max_steps=3, batch_size=2,
                                                                                   learning_rate=1e-2), tmp_path)
    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert (cfg["r"], cfg["lora_alpha"], cfg["lora_dropout"]) == (8, 16, 0.1)
    assert sorted(cfg["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    assert stats["steps"] == 3 and len(stats["loss_history"]) == 3
    assert stats["loss_history"][-1] < stats["loss_history"][0]  # it learns the repeated answer

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = torch.tensor([[1, 2, 3, 4]])
    before = base(ids).logits
    after = PeftModel.from_pretrained(base, tmp_path / "adapter")(ids).logits
    assert not torch.allclose(before, after)  # the adapter is not a no-op


def test_answer_only_loss_equals_the_models_own_loss_and_gradients(tiny_model_dir, bundled_tokenizer):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq

    long = [MSGS[0] | {"content": "Tell me, with some care and in detail: what is 2+2?"}, MSGS[1]]
    batch = DataCollatorForSeq2Seq(bundled_tokenizer, padding=True, label_pad_token_id=IGNORE)(
        [encode_target(bundled_tokenizer, m, 512) for m in (MSGS, long)])
    assert (batch["labels"][:, :5] == IGNORE).all()  # the prompt part is really skipped
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, init_lora_weights=False,
                                      target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    grads = []
    for loss_fn in (lambda: model(**batch).loss, lambda: answer_only_loss(model, batch),
                    lambda: answer_only_loss(model, batch, num_items_in_batch=7) * 7 / int(
                        (batch["labels"][:, 1:] != IGNORE).sum())):
        model.zero_grad()
        loss = loss_fn()
        loss.backward()
        grads.append((loss.item(), [p.grad.clone() for p in model.parameters() if p.requires_grad]))
    for value, g in grads[1:]:
        assert value == pytest.approx(grads[0][0], rel=1e-5)
        assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(g, grads[0][1]))


def test_empty_targets_fail_clearly(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="no training targets"):
        train_adapter(tiny_model_dir, [], LoraSettings(), TrainingSettings(), tmp_path)


@pytest.mark.slow
def test_accelerate_launcher_trains_the_same_adapter_as_in_process(tiny_model_dir, tmp_path):
    """`training.launcher: accelerate` (one process, accelerate's defaults) runs the same recipe through
    `accelerate launch`: the same losses and the same adapter weights, which is why the launcher is not
    part of the train stage's cache key."""
    from safetensors.torch import load_file

    from tasks.core.records import write_jsonl
    from tasks.engines.lora import train_with_accelerate

    targets = [Target(example_id=str(i), source="gold", messages=MSGS) for i in range(6)]
    settings = TrainingSettings(max_steps=3, batch_size=2, learning_rate=1e-2, save_steps=None)
    local = train_adapter(tiny_model_dir, targets, LoraSettings(), settings, tmp_path / "local")
    launched = train_with_accelerate(write_jsonl(tmp_path / "targets.jsonl", targets), tiny_model_dir, LoraSettings(),
                                     settings.model_copy(update={"launcher": "accelerate"}), tmp_path / "launched")
    assert launched["loss_history"] == pytest.approx(local["loss_history"], rel=1e-5)
    a = load_file(tmp_path / "local" / "adapter" / "adapter_model.safetensors")
    b = load_file(tmp_path / "launched" / "adapter" / "adapter_model.safetensors")
    import torch

    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert not (tmp_path / "launched" / "checkpoints").exists()


def test_accelerate_command_runs_this_module_with_the_users_arguments(tmp_path):
    s = TrainingSettings(launcher="accelerate", accelerate_args=["--num_processes", "8", "--multi_gpu"])
    cmd = accelerate_command(tmp_path / "t.jsonl", tmp_path / "m", LoraSettings(), s, tmp_path / "o")
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert cmd[3:12] == ["--num_processes", "8", "--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no",
                         "--num_machines", "1"]
    assert cmd[12:14] == ["-m", "tasks.engines.lora_rank"]  # tasks/engines/lora.py's main, tied to the launcher first
    unnamed = accelerate_command(tmp_path / "t.jsonl", tmp_path / "m", LoraSettings(), TrainingSettings(
        launcher="accelerate"), tmp_path / "o")
    assert unnamed[3:5] == ["--num_processes", "1"]  # never accelerate's default (every GPU of the machine)
    assert TrainingSettings.model_validate_json(cmd[cmd.index("--training") + 1]) == s


def test_a_ddp_checkpoint_is_complete_once_every_rank_saved_its_rng_state(tmp_path):
    import json

    from tasks.engines.lora import last_complete_checkpoint

    import torch

    for step in (2, 4):
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        (d / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        torch.save({"python": step}, d / "rng_state_0.pth")
    torch.save({"python": 2}, tmp_path / "checkpoint-2" / "rng_state_1.pth")
    torch.save({"python": 4}, tmp_path / "checkpoint-4" / "rng_state_1.pth")
    whole = (tmp_path / "checkpoint-4" / "rng_state_1.pth").read_bytes()
    (tmp_path / "checkpoint-4" / "rng_state_1.pth").write_bytes(whole[:len(whole) // 2])  # rank 1 killed mid-write
    assert last_complete_checkpoint(tmp_path, world_size=2) == tmp_path / "checkpoint-2"
    (tmp_path / "checkpoint-4" / "rng_state_1.pth").write_bytes(whole)
    assert last_complete_checkpoint(tmp_path, world_size=2) == tmp_path / "checkpoint-4"
    assert last_complete_checkpoint(tmp_path) is None  # one process writes rng_state.pth


def test_a_failed_launch_is_one_line_with_the_fix():
    from tasks.core.errors import InputError, TrainingLaunchError

    err = TrainingLaunchError.of(-9, ["accelerate", "launch"])
    assert isinstance(err, InputError) and "was killed by SIGKILL" in str(err) and "\n" not in str(err)
    assert "Fix: if a rank ran out of memory, lower training.batch_size" in str(err)
    assert "exited with code 1;" in str(TrainingLaunchError.of(1, ["x"]))
    assert "was killed by signal 40;" in str(TrainingLaunchError.of(-40, ["x"]))  # a real-time signal has no name


def test_a_rank_whose_launcher_died_before_it_started_exits(tmp_path):
    """The parent-death signal cannot cover a launcher that died before the rank asked for it: the rank compares
    its parent's parent with the stage that started the launcher (tasks/engines/lora_rank.py)."""
    import os
    import subprocess

    from s3ft_cli import ROOT

    code = "import sys; from tasks.engines.orphans import die_with_parent, libc_prctl; " \
           "die_with_parent(libc_prctl(), grandparent=int(sys.argv[1])); print('training')"
    ours = subprocess.run([sys.executable, "-c", code, str(os.getppid())], capture_output=True, text=True, cwd=ROOT)
    assert ours.returncode == 0 and ours.stdout.strip() == "training"  # its parent (this test) is the launcher
    adopted = subprocess.run([sys.executable, "-c", code, str(os.getpid())], capture_output=True, text=True, cwd=ROOT)
    assert adopted.returncode == 1 and adopted.stdout == ""
