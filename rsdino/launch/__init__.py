"""Launchers: run a pretraining job here (``local``) or as one SLURM job through submitit (``submitit``).

``rsdino.launch.submitit_launcher`` submits ``rsdino pretrain`` as a job of ``nodes x
tasks_per_node`` tasks, initialises ``torch.distributed`` from the job's environment, streams the
job's log, and checkpoints and requeues the job on SLURM's preemption or time-out signal.
"""

LAUNCHERS = ("local", "submitit")
