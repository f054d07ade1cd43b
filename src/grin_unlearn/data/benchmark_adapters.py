"""The benchmark adapters: TOFU, WMDP, PKU-SafeRLHF and MUSE (the interface and registry:
:mod:`grin_unlearn.data.benchmarks`, which imports this module so that they are registered).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserInputError
from .benchmark_base import (Benchmark, EvalSets, HubSource, SafetyPrompts, TrainingSets, is_records_file,
                         register_benchmark, validate_mcq_records, validate_text_records)
from .formatting import is_text_record
from .records import is_hub_id, load_split, validate_qa_records


# --- TOFU ------------------------------------------------------------------------------------------


def tofu_records(records: list[dict], source: str) -> list[dict]:
    """TOFU records, validated; a string ``perturbed_answer`` becomes a one-item list and a list
    ``paraphrased_answer`` its first item (TOFU's Hub files use the list / string forms)."""
    fixed = []
    for record in records:
        record = dict(record)
        if isinstance(record.get("perturbed_answer"), str):
            record["perturbed_answer"] = [record["perturbed_answer"]]
        if isinstance(record.get("paraphrased_answer"), list):
            record["paraphrased_answer"] = record["paraphrased_answer"][0] if record["paraphrased_answer"] else None
        fixed.append(record)
    return validate_qa_records(fixed, source)


@register_benchmark
class Tofu(Benchmark):
    """TOFU (Maini et al. 2024, arXiv 2401.06121): fictitious authors, forget 1/5/10 % of them.

    ``forget10`` trains on forget10 / retain90 and evaluates forget10_perturbed (forget10 if absent),
    retain_perturbed (the retain split if absent), holdout10 (``holdout`` in a generated world),
    real_authors_perturbed and world_facts_perturbed (the plain names if absent), each when present.
    """

    name = "tofu"
    hub_id = "locuslab/TOFU"
    forget_splits = ("forget01", "forget05", "forget10")
    default_forget = "forget10"
    HUB_CONFIGS = ("full", "forget01", "forget05", "forget10", "retain99", "retain95", "retain90",
                   "holdout01", "holdout05", "holdout10", "forget01_perturbed", "forget05_perturbed",
                   "forget10_perturbed", "retain_perturbed", "real_authors", "real_authors_perturbed",
                   "world_facts", "world_facts_perturbed")

    def _qa(self, data: str, name: str) -> list[dict]:
        return tofu_records(self._load(data, name, HubSource(data, name)), f"{data}:{name}")

    def _first_present(self, data: str, names: tuple[str, ...]) -> str | None:
        return next((n for n in names if self._has(data, n, self.HUB_CONFIGS)), None)

    def training_sets(self, data, forget_split, retain=None) -> TrainingSets:
        data = self._data(data)
        name, count = self._forget(forget_split)
        retain_name = retain or f"retain{100 - int(name[-2:]):02d}"
        return TrainingSets(self._qa(data, name)[:count], self._qa(data, retain_name), name, retain_name, data)

    def eval_sets(self, data, forget_split, retain=None) -> EvalSets:
        data = self._data(data)
        name, count = self._forget(forget_split)
        percent = name[-2:]
        wanted = {
            "forget": (f"{name}_perturbed", name),
            "retain": (retain,) if retain else ("retain_perturbed", f"retain{100 - int(percent):02d}"),
            "holdout": (f"holdout{percent}", "holdout"),
            "real_authors": ("real_authors_perturbed", "real_authors"),
            "world_facts": ("world_facts_perturbed", "world_facts"),
        }
        sets, roles = {}, {}
        for role, names in wanted.items():
            found = names[0] if is_records_file(names[0]) else self._first_present(data, names)
            if found is None and role not in ("forget", "retain"):
                continue
            found = found or names[-1]  # a missing forget / retain split: loading it names what is there
            records = self._qa(data, found)
            set_name = Path(found).stem if is_records_file(found) else found
            sets[set_name] = records[:count] if role == "forget" else records
            roles[set_name] = role
        return EvalSets(sets, roles, data=data)


# --- WMDP ------------------------------------------------------------------------------------------


@register_benchmark
class Wmdp(Benchmark):
    """WMDP (Li et al. 2024, "The WMDP Benchmark", arXiv 2403.03218): hazardous knowledge, by domain.

    ``bio`` / ``cyber`` / ``chem`` unlearn the raw-text ``<domain>-forget-corpus`` (on the Hub,
    ``cais/wmdp-corpora`` has cyber's; text records: ga, graddiff, npo and simnpo only) against a text retain
    corpus (default ``wikitext``: wikitext-2-raw-v1's train split; or ``<domain>-retain-corpus``),
    and are evaluated by zero-shot letter-logit accuracy on ``wmdp-<domain>`` (``cais/wmdp``) and
    on MMLU (``cais/mmlu``, all subjects, the utility check), both role ``mcq``. The bio forget
    corpus is not public on the Hub (WMDP's authors share it on request): put it in a local folder
    as ``bio-forget-corpus.jsonl``. ``chem`` has no released forget corpus: give your own the same way.

    ``world`` is the offline stand-in on a folder written by ``grin-unlearn world``: forget10 /
    retain90 question/answer training sets, evaluated on ``forget_mcq`` and ``retain_mcq``.
    """

    name = "wmdp"
    hub_id = "cais/wmdp"
    forget_splits = ("bio", "cyber", "chem", "world")
    default_forget = "cyber"  # the one domain whose forget corpus is public on the Hub
    CORPORA = "cais/wmdp-corpora"
    # The public configs of cais/wmdp-corpora: the bio forget corpus is shared by WMDP's authors on request only.
    CORPORA_CONFIGS = ("cyber-forget-corpus", "bio-retain-corpus", "cyber-retain-corpus")
    TEXT_SOURCES = {"wikitext": HubSource("Salesforce/wikitext", "wikitext-2-raw-v1", "train")}
    MMLU = HubSource("cais/mmlu", "all", "test")

    def _text(self, data: str, name: str, flag: str) -> list[dict]:
        hub = self.TEXT_SOURCES.get(name) or HubSource(self.CORPORA, name, "train")
        if is_hub_id(data) and not is_records_file(name) and name not in self.TEXT_SOURCES \
                and name not in self.CORPORA_CONFIGS:
            valid = ", ".join(list(self.TEXT_SOURCES) + list(self.CORPORA_CONFIGS))
            raise UserInputError(f"{flag}: '{name}' is not a public WMDP text corpus on the Hub (those are: {valid}); "
                                 f"put {name}.jsonl (one {{\"text\": ...}} per line) in a folder with the other "
                                 "WMDP files and pass --data FOLDER (see docs/benchmarks/)")
        return validate_text_records(self._load(data, name, hub), f"{data}:{name}")

    def training_sets(self, data, forget_split, retain=None) -> TrainingSets:
        data = self._data(data)
        domain, count = self._forget(forget_split)
        if domain == "world":
            retain_name = retain or "retain90"
            forget = validate_qa_records(load_split(data, "forget10"), f"{data}:forget10")[:count]
            retain_records = self._load(data, retain_name, HubSource(data, retain_name))
            retain_records = (validate_text_records(retain_records, retain_name)
                              if retain_records and is_text_record(retain_records[0])
                              else validate_qa_records(retain_records, f"{data}:{retain_name}"))
            return TrainingSets(forget, retain_records, "forget10", retain_name, data)
        forget_name, retain_name = f"{domain}-forget-corpus", retain or "wikitext"
        return TrainingSets(self._text(data, forget_name, "--forget-split")[:count],
                            self._text(data, retain_name, "--retain"), forget_name, retain_name, data)

    def eval_sets(self, data, forget_split, retain=None) -> EvalSets:
        data = self._data(data)
        domain, count = self._forget(forget_split)
        if domain == "world":
            names = {"forget_mcq": HubSource(data, "forget_mcq"), "retain_mcq": HubSource(data, "retain_mcq")}
        else:
            names = {f"wmdp-{domain}": HubSource(data, f"wmdp-{domain}", "test")}
            if is_hub_id(data) or self._has(data, "mmlu", ()):
                names["mmlu"] = self.MMLU
        sets = {name: validate_mcq_records(self._load(data, name, hub), f"{data}:{name}")
                for name, hub in names.items()}
        return EvalSets(sets, {name: "mcq" for name in sets}, data=data)


# --- PKU-SafeRLHF ----------------------------------------------------------------------------------


def pku_rows(rows: list[dict], source: str) -> list[dict]:
    """Check the PKU-SafeRLHF fields used here (``prompt``, ``response_{0,1}``, ``is_response_{0,1}_safe``)."""
    if not rows:
        raise UserInputError(f"{source}: the split is empty (expected PKU-SafeRLHF rows)")
    for index, row in enumerate(rows):
        for key in ("prompt", "response_0", "response_1"):
            if not isinstance(row.get(key), str):
                raise UserInputError(f"{source}: row {index} has no string field '{key}' "
                                     "(expected the PKU-SafeRLHF schema)")
        for key in ("is_response_0_safe", "is_response_1_safe"):
            if not isinstance(row.get(key), bool):
                raise UserInputError(f"{source}: row {index} field '{key}' must be true or false")
    return rows


def pku_pairs(rows: list[dict], safe: bool) -> list[dict]:
    """(prompt, response) question/answer records of the responses labelled ``safe`` (or unsafe)."""
    pairs, seen = [], set()
    for row in rows:
        for i in (0, 1):
            answer = row[f"response_{i}"].strip()
            key = (row["prompt"], answer)
            if row[f"is_response_{i}_safe"] is safe and row["prompt"].strip() and answer and key not in seen:
                seen.add(key)
                pairs.append({"question": row["prompt"], "answer": answer})
    return pairs


@register_benchmark
class PkuSafeRlhf(Benchmark):
    """PKU-SafeRLHF (Ji et al. 2023, arXiv 2307.04657): unlearn harmful answers to harmful prompts.

    Forget set: (prompt, unsafe response) pairs of the forget split (``train`` or ``test``, optionally
    ``[:N]`` rows), as question/answer records, so PO / IdkDPO train towards the refusals of
    :mod:`grin_unlearn.data.refusals`. Retain set: (prompt, safe response) pairs of the selected rows
    whose prompt is not in the forget set (both responses safe), or any question/answer file given
    as ``retain``. Evaluation: the TOFU metrics on the forget and retain pairs, and the safety
    metrics (:mod:`grin_unlearn.metrics.safety`) on the forget prompts and on the harmful prompts of
    the other split (held out).
    """

    name = "pku"
    hub_id = "PKU-Alignment/PKU-SafeRLHF"
    forget_splits = ("train", "test")
    default_forget = "train"

    def _rows(self, data: str, split: str) -> list[dict]:
        return pku_rows(self._load(data, split, HubSource(data, "default", split)), f"{data}:{split}")

    def _retain(self, data: str, retain: str | None, rows: list[dict], forget: list[dict]) -> tuple[list[dict], str]:
        if retain:
            return validate_qa_records(self._load(data, retain, HubSource(data, retain)), f"{data}:{retain}"), retain
        harmful = {r["question"] for r in forget}
        safe = [r for r in pku_pairs(rows, safe=True) if r["question"] not in harmful]
        if not safe:
            raise UserInputError(f"{data}: no row of the forget split has two safe responses to use as the retain "
                                 "set; pass --retain FILE.jsonl (question/answer records)")
        return safe, "safe_responses"

    def training_sets(self, data, forget_split, retain=None) -> TrainingSets:
        data = self._data(data)
        split, count = self._forget(forget_split)
        rows = self._rows(data, split)[:count]
        forget = pku_pairs(rows, safe=False)
        if not forget:
            raise UserInputError(f"{data}:{split}: no unsafe response in the selected rows (nothing to forget)")
        retain_records, retain_name = self._retain(data, retain, rows, forget)
        return TrainingSets(forget, retain_records, f"{split}_unsafe", retain_name, data)

    def eval_sets(self, data, forget_split, retain=None) -> EvalSets:
        train = self.training_sets(data, forget_split, retain)
        split, _ = self._forget(forget_split)
        heldout_split = "test" if split == "train" else "train"
        sets = {train.forget_name: train.forget, train.retain_name: train.retain}
        roles = {train.forget_name: "forget", train.retain_name: "retain"}
        safety = {"safety_forget": SafetyPrompts([r["question"] for r in train.forget], train.forget_name)}
        if self._has(train.data, heldout_split, self.forget_splits):  # a local folder may hold one split only
            rows = self._rows(train.data, heldout_split)
            prompts = list(dict.fromkeys(r["question"] for r in pku_pairs(rows, safe=False)))
            if prompts:
                safety["safety_heldout"] = SafetyPrompts(prompts)
        return EvalSets(sets, roles, safety, data=train.data)


# --- MUSE ------------------------------------------------------------------------------------------


@register_benchmark
class Muse(Benchmark):
    """MUSE (Shi et al. 2024, "MUSE: Machine Unlearning Six-Way Evaluation for Language Models", arXiv
    2407.06460): unlearn news articles (``news``: ``muse-bench/MUSE-News``) or Harry Potter books
    (``books``: ``muse-bench/MUSE-Books``).

    Training: the raw forget corpus (``raw`` config, ``forget`` split; text records: ga, graddiff, npo
    and simnpo) against the raw retain corpus (``retain1``, or ``retain``). Evaluation
    (:mod:`grin_unlearn.evaluation.muse`): VerbMem on ``verbmem``/``forget`` (prompt → continuation,
    ``gt``), KnowMem on ``knowmem``/``forget_qa`` and ``retain_qa`` with their ``*_icl`` in-context
    examples, and Min-K% on ``privleak``/``forget`` (members) and ``holdout`` (non-members) for PrivLeak.
    A local folder holds each as ``<config>_<split>.json(l)``: ``raw_forget``, ``raw_retain1``,
    ``verbmem_forget``, ``knowmem_forget_qa``, ``knowmem_forget_qa_icl``, ``knowmem_retain_qa``,
    ``knowmem_retain_qa_icl``, ``privleak_forget``, ``privleak_holdout``.
    """

    name = "muse"
    hub_id = ""  # per corpus: HUB_IDS
    forget_splits = ("news", "books")
    default_forget = "news"
    HUB_IDS = {"news": "muse-bench/MUSE-News", "books": "muse-bench/MUSE-Books"}
    EVAL_SETS = {"verbmem_forget": "verbmem", "knowmem_forget_qa": "knowmem_forget",
                 "knowmem_retain_qa": "knowmem_retain", "privleak_forget": "mia_forget",
                 "privleak_holdout": "mia_holdout"}

    def _corpus(self, data: str | None, forget_split: str | None) -> tuple[str, str, int | None]:
        corpus, count = self._forget(forget_split)
        return (str(data) if data else self.HUB_IDS[corpus]), corpus, count

    def _set(self, data: str, name: str) -> list[dict]:
        """``<config>_<split>`` from a local folder, or that config and split of the Hub dataset."""
        config, split = name.split("_", 1)
        return self._load(data, name, HubSource(data, config, split))

    def training_sets(self, data, forget_split, retain=None) -> TrainingSets:
        data, _, count = self._corpus(data, forget_split)
        retain_name = retain or "raw_retain1"
        retain_records = (self._load(data, retain_name, HubSource(data, "raw", "retain1")) if retain
                          else self._set(data, retain_name))
        return TrainingSets(validate_text_records(self._set(data, "raw_forget"), f"{data}:raw_forget")[:count],
                            validate_text_records(retain_records, f"{data}:{retain_name}"),
                            "raw_forget", retain_name, data)

    def eval_sets(self, data, forget_split, retain=None) -> EvalSets:
        from ..evaluation.muse import check_muse_records

        data, _, count = self._corpus(data, forget_split)
        sets = {}
        for name, role in self.EVAL_SETS.items():
            records = [dict(r) for r in self._set(data, name)]
            if role.startswith("knowmem"):
                shots = [(s["question"], s["answer"]) for s in self._set(data, f"{name}_icl")]
                for record in records:
                    record["shots"] = shots
            sets[name] = check_muse_records(records[:count] if role == "verbmem" else records, role, f"{data}:{name}")
        return EvalSets(sets, dict(self.EVAL_SETS), data=data)
