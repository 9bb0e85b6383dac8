from pathlib import Path

from sb3_pgnotes.common.safe_load import load_untrusted
from sb3_pgnotes.nstep_ac import NStepAC
from sb3_pgnotes.offpolicy_pg import OffPolicyPG
from sb3_pgnotes.ppo_kl import PPOKL
from sb3_pgnotes.reinforce import Reinforce

__version__ = (Path(__file__).parent / "version.txt").read_text(encoding="utf-8").strip()

__all__ = ["PPOKL", "NStepAC", "OffPolicyPG", "Reinforce", "__version__", "load_untrusted"]
