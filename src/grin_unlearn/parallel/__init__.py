"""Several processes: process groups (:mod:`.distributed`: launch checks, ranks, all-reduce of
gradient sums) and FSDP2 sharding (:mod:`.sharding`: shard-local views, global counts, gathering
masks and state dicts). The FSDP2 training loop itself is step 4's, in ``training/sharded.py``."""
