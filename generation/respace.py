"""Respacing specs (guided-diffusion ``respace.space_timesteps``); pure Python so specs validate without torch."""

from __future__ import annotations


def space_timesteps(num_timesteps: int, section_counts: str | list[int]) -> set[int]:
    """The original timesteps kept by a respacing spec (``space_timesteps`` of ``respace.py``).

    ``"ddimN"``: the stride ``i`` with ``len(range(0, T, i)) == N`` (T-1 is *not* included);
    ``"N"`` or ``"a,b,c"``: equal sections, each with a rounded fractional stride (0 and T-1
    included).

    Raises
    ------
    ValueError: a malformed spec or one that asks for more steps than a section has.
    """
    if isinstance(section_counts, str):
        if section_counts.startswith("ddim"):
            desired = int(section_counts[len("ddim"):])
            for i in range(1, num_timesteps):
                if len(range(0, num_timesteps, i)) == desired:
                    return set(range(0, num_timesteps, i))
            raise ValueError(f"cannot create exactly {desired} steps with an integer stride (respacing {section_counts!r})")
        try:
            section_counts = [int(x) for x in section_counts.split(",")]
        except ValueError:
            raise ValueError(f"respacing {section_counts!r} must be 'N', 'a,b,c' or 'ddimN'") from None
    size_per = num_timesteps // len(section_counts)
    extra = num_timesteps % len(section_counts)
    start_idx = 0
    all_steps: list[int] = []
    for i, section_count in enumerate(section_counts):
        size = size_per + (1 if i < extra else 0)
        if size < section_count or section_count < 1:
            raise ValueError(f"cannot divide a section of {size} steps into {section_count}")
        frac_stride = 1 if section_count <= 1 else (size - 1) / (section_count - 1)
        cur_idx = 0.0
        for _ in range(section_count):
            all_steps.append(start_idx + round(cur_idx))
            cur_idx += frac_stride
        start_idx += size
    return set(all_steps)
