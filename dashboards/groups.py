"""Channel-layer group names: built here and nowhere else."""


def board_group(region: str = "all") -> str:
    return f"board-{region}"


def agent_group(agent_id: int) -> str:
    return f"agent-{agent_id}"
