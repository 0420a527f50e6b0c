"""entropy_watch.trainer: the bundled REPO/ADAPO reference trainer (needs torch and transformers).

One loop that reads top to bottom (``loop.py``), algorithms as small pure functions (``algorithms.py``) picked by
plain config switches (``config.ALGOS``), synthetic verifiable tasks with many correct answers (``tasks.py``), SFT
warm-up (``sft.py``), pass@k evaluation (``evaluate.py``) and the comparison with the sequential-learning probe
(``compare.py``). It logs through ``entropy_watch.hooks.Watch`` like any other trainer.

    config.py      dataclasses, presets ``tiny`` / ``gpu``, the named algorithms
    tokenizer.py   character tokenizer (sum3 symbols + digits of more numeral scripts), a real HF fast tokenizer
    tasks.py       sum3 (task A) and sum3sorted (task B), rewards, distinct answers
    model.py       tiny GPT from a transformers config, ``--model PATH`` loading, precision modes
    algorithms.py  advantages, aggregation, surrogate, DAPO, Clip-Cov, KL-Cov, 80/20, REPO-R/D, controllers
    rollout.py     batched sampling with the sampler's log-probs and entropies
    evaluate.py    pass@k (unbiased), distinct correct answers, eval entropy
    sft.py         SFT warm-up and ``save_pretrained`` policies
    checkpoint.py  resumable checkpoints
    loop.py        THE loop: rollout -> reward -> advantage -> update -> controllers -> log -> eval -> save
    compare.py     every algorithm from one SFT checkpoint; the table

Command line: ``entropy-watch train`` and ``entropy-watch compare`` (``entropy_watch/cli/train_cmds.py``).
"""
