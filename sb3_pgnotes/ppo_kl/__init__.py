from sb3_pgnotes.ppo_kl.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from sb3_pgnotes.ppo_kl.ppo_kl import PPOKL

__all__ = ["PPOKL", "CnnPolicy", "MlpPolicy", "MultiInputPolicy"]
