"""The symbolic network: specs (weights and graph as data), tools, the Pipeline and its
trajectories."""

from localsym.agent.parameters import Parameter
from localsym.agent.pipeline import Pipeline
from localsym.agent.node import NodeSpec
from localsym.agent.spec import EdgeSpec, PipelineSpec
from localsym.agent.weights import Demonstration, FieldSpec, PROMPT_FIELDS, PromptWeights, ToolSpec
from localsym.agent.tools import ToolCallRecord, ToolRegistry, default_tools
from localsym.agent.trajectory import NodeRecord, Trajectory

__all__ = ["PROMPT_FIELDS", "Demonstration", "EdgeSpec", "FieldSpec", "NodeRecord", "NodeSpec",
           "Parameter", "Pipeline", "PipelineSpec", "PromptWeights", "ToolCallRecord",
           "ToolRegistry", "ToolSpec", "Trajectory", "default_tools"]
