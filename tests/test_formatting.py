"""Tests for grin_unlearn.data.formatting: the reference TOFU tokenisation boundary, split style, chat
templates, truncation, and the recorded prompt format."""

import argparse

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from grin_unlearn.commands.common import prompt_format_from_args
from grin_unlearn.data.formatting import PromptFormat, encode_example, encode_training_records
from grin_unlearn.errors import UserInputError
from grin_unlearn.logprobs import IGNORE_INDEX

CORPUS = ["Question: Where was Ana Lee born?\nAnswer: Ana Lee was born in Paris.",
          "Question: What does Ana Lee write?\nAnswer: Ana Lee writes poems about rivers."] * 20


def byte_level_bpe(bos: bool = False, eos: bool = False) -> PreTrainedTokenizerFast:
    """A GPT-2-style byte-level BPE: the space attaches to the following word (" born" is one token)."""
    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>", "<pad>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator(CORPUS, trainer=trainer)
    if bos or eos:  # special tokens the tokenizer adds itself (add_special_tokens=True)
        single = ("<s> " if bos else "") + "$A" + (" </s>" if eos else "")
        core.post_processor = processors.TemplateProcessing(
            single=single, special_tokens=[("<s>", core.token_to_id("<s>")), ("</s>", core.token_to_id("</s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")


def naive_reference(tokenizer, question, answer, max_length=512):
    """open-unlearning's preprocess_chat_instance (non-chat), written out."""
    prompt = "Question: " + question + "\n" + "Answer: "
    chat_ids = tokenizer(prompt + answer, add_special_tokens=True, max_length=max_length, truncation=True)["input_ids"]
    prompt_ids = tokenizer(prompt, add_special_tokens=True, max_length=max_length, truncation=True)["input_ids"]
    if chat_ids[-1] != tokenizer.eos_token_id:
        chat_ids += [tokenizer.eos_token_id]
    return chat_ids, [IGNORE_INDEX] * len(prompt_ids) + chat_ids[len(prompt_ids):], prompt_ids


@pytest.mark.parametrize("bos, eos", [(False, False), (True, False), (True, True)])
def test_tofu_style_equals_the_reference_tokenisation(bos, eos):
    tokenizer = byte_level_bpe(bos, eos)
    pairs = [("Where was Ana Lee born?", "Ana Lee was born in Paris."), ("What does Ana Lee write?", "Poems.")]
    for (question, answer), example in zip(pairs, PromptFormat().encode_many(tokenizer, pairs)):
        ids, labels, prompt = naive_reference(tokenizer, question, answer)
        assert example["input_ids"] == ids and example["labels"] == labels and example["prompt_ids"] == prompt
        assert ids.count(tokenizer.eos_token_id) == 1  # appended only when the tokenizer did not add it
        assert (ids[0] == tokenizer.bos_token_id) == bos


def test_space_attaching_tokenizer_shifts_the_label_start_by_one_token():
    """With a byte-level BPE, "Answer: " alone ends in a lone "Ġ" (space) token, while in the joint
    string the space belongs to " Ana". The prompt's token count therefore reaches past the boundary:
    the first answer token " Ana" is not labelled (the reference's behaviour), and the generation prompt
    ends in the lone space token."""
    tokenizer = byte_level_bpe()
    example = encode_example(tokenizer, "Where was Ana Lee born?", "Ana Lee was born in Paris.", PromptFormat())
    tokens = tokenizer.convert_ids_to_tokens(example["input_ids"])
    prompt_tokens = tokenizer.convert_ids_to_tokens(example["prompt_ids"])
    assert prompt_tokens[-1] == "Ġ" and tokens[:len(prompt_tokens) - 1] == prompt_tokens[:-1]
    first_labelled = next(i for i, label in enumerate(example["labels"]) if label != IGNORE_INDEX)
    assert first_labelled == len(example["prompt_ids"])
    assert tokens[first_labelled - 1] == "ĠAna"  # the first answer word sits under the prompt mask
    assert tokenizer.decode([t for t in example["labels"] if t != IGNORE_INDEX]) == " Lee was born in Paris.</s>"


def test_split_style_labels_every_answer_token():
    tokenizer = byte_level_bpe()
    example = encode_example(tokenizer, "Where was Ana Lee born?", "Ana Lee was born in Paris.",
                             PromptFormat(style="split"))
    n_prompt = example["labels"].count(IGNORE_INDEX)
    assert example["input_ids"][0] == tokenizer.bos_token_id  # BOS added by hand in split style
    assert tokenizer.decode(example["input_ids"][n_prompt:]) == " Ana Lee was born in Paris.</s>"
    assert tokenizer.decode(example["prompt_ids"]).endswith("Answer:")


def test_truncation_as_the_tokenizer_truncates_then_eos():
    tokenizer = byte_level_bpe()
    question, answer = "word " * 40, "Ana Lee was born in Paris."
    example = encode_example(tokenizer, question, answer, PromptFormat(max_length=16))
    ids, labels, _ = naive_reference(tokenizer, question, answer, max_length=16)
    assert example["truncated"] and example["input_ids"] == ids and example["labels"] == labels
    assert len(ids) == 17 and [t for t in labels if t != IGNORE_INDEX] == [tokenizer.eos_token_id]
    split = encode_example(tokenizer, question, answer, PromptFormat(style="split", max_length=16))
    assert len(split["input_ids"]) == 16 and split["labels"].count(IGNORE_INDEX) < 16


CHAT = ("{% if date_string %}[{{ date_string }}]{% endif %}"
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def test_chat_template_with_system_prompt_as_the_reference_chat_configs():
    tokenizer = byte_level_bpe()
    tokenizer.chat_template = CHAT
    fmt = PromptFormat(chat_template=True, date_string="10 Apr 2025")
    example = encode_example(tokenizer, "Where was Ana Lee born?", "In Paris.", fmt)
    prompt_text = tokenizer.decode(example["prompt_ids"])
    assert prompt_text == ("[10 Apr 2025]<|system|>You are a helpful assistant.</s><|user|>Where was Ana Lee born?</s>"
                           "<|assistant|>")
    full = tokenizer.apply_chat_template(
        [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Where was Ana Lee born?"},
         {"role": "assistant", "content": "In Paris."}], tokenize=False, date_string="10 Apr 2025")
    ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    assert example["input_ids"] == ids  # the conversation already ends in EOS: not appended again
    assert example["labels"] == [IGNORE_INDEX] * len(example["prompt_ids"]) + ids[len(example["prompt_ids"]):]
    no_system = encode_example(tokenizer, "q?", "a.", PromptFormat(chat_template=True, system_prompt=""))
    assert "system" not in tokenizer.decode(no_system["input_ids"])


def test_training_records_keep_order_between_text_and_qa():
    tokenizer = byte_level_bpe()
    records = [{"question": "Where was Ana Lee born?", "answer": "Paris."}, {"text": "Ana Lee writes poems."},
               {"question": "What does Ana Lee write?", "answer": "Poems."}]
    examples = encode_training_records(tokenizer, records, PromptFormat())
    assert len(examples) == 3 and examples[1]["labels"] == examples[1]["input_ids"]
    assert examples[2] == encode_example(tokenizer, "What does Ana Lee write?", "Poems.", PromptFormat())


def test_prompt_format_round_trip_and_errors(tmp_path):
    fmt = PromptFormat(style="split", chat_template=True, system_prompt="", max_length=64)
    fmt.save(tmp_path)
    assert PromptFormat.load(tmp_path) == fmt
    assert PromptFormat.load(tmp_path / "missing") is None
    (tmp_path / "prompt_format.json").write_text('{"style": "tofu", "colour": "red"}')
    with pytest.raises(UserInputError, match="colour"):
        PromptFormat.load(tmp_path)
    with pytest.raises(UserInputError, match="--prompt-style"):
        PromptFormat(style="joint")
    with pytest.raises(UserInputError, match="question"):
        PromptFormat(template="Q: A:")


def test_commands_use_the_recorded_format_and_flags_override_it(tmp_path):
    PromptFormat(style="split", max_length=64).save(tmp_path)
    args = argparse.Namespace(model=str(tmp_path), prompt_style=None, system_prompt=None, chat_date_string=None,
                              chat_template=False)
    assert prompt_format_from_args(args, max_length=512) == PromptFormat(style="split", max_length=512)
    args.prompt_style, args.chat_template = "tofu", True
    assert prompt_format_from_args(args) == PromptFormat(chat_template=True, max_length=64)
    args.model = "owner/hub-model"  # nothing recorded: the default format
    assert prompt_format_from_args(args).style == "tofu"
    args.chat_template, args.prompt_template = False, "Q: {question}\\nA: "  # as typed in a shell: backslash-n
    assert prompt_format_from_args(args).template == "Q: {question}\nA: "


def test_llama2_chat_tags_as_the_reference_config():
    """The reference formats Llama-2-chat as '[INST] ' + q + ' [/INST]' + answer (no chat template)."""
    tokenizer = byte_level_bpe(bos=True)
    example = encode_example(tokenizer, "Where?", "Paris.", PromptFormat(template="[INST] {question} [/INST]"))
    assert tokenizer.decode(example["input_ids"]) == "<s>[INST] Where? [/INST]Paris.</s>"
    assert tokenizer.decode(example["prompt_ids"]) == "<s>[INST] Where? [/INST]"
