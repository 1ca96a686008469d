"""The chaos suite: the full stack under SIGKILLs, SMTP outages and 4xx, a broker restart and bad
input, judged against a fault-free run of the same log (`make chaos`; docs/performance.md).

Modules, one concern each: `workload` (the deterministic event log), `stack` (the processes and
the recording SMTP sink), `faults` (the seeded fault schedule), `topics` (reading what Nudge
wrote to Kafka), `verdict` (pure comparison), `run` (the command line).
"""
