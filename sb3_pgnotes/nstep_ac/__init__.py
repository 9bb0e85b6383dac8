from sb3_pgnotes.nstep_ac.nstep_ac import NStepAC
from sb3_pgnotes.nstep_ac.policies import CnnPolicy, MlpPolicy, MultiInputPolicy

__all__ = ["CnnPolicy", "MlpPolicy", "MultiInputPolicy", "NStepAC"]
