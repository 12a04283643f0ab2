"""The symbolic network: specs (weights and graph as data), tools, the Pipeline and its
trajectories."""

from localsym.agent.pipeline import Parameter, Pipeline
from localsym.agent.spec import (PROMPT_FIELDS, Demonstration, EdgeSpec, FieldSpec, NodeSpec,
                                 PipelineSpec, PromptWeights, ToolSpec)
from localsym.agent.tools import ToolCallRecord, ToolRegistry, default_tools
from localsym.agent.trajectory import NodeRecord, Trajectory

__all__ = ["PROMPT_FIELDS", "Demonstration", "EdgeSpec", "FieldSpec", "NodeRecord", "NodeSpec",
           "Parameter", "Pipeline", "PipelineSpec", "PromptWeights", "ToolCallRecord",
           "ToolRegistry", "ToolSpec", "Trajectory", "default_tools"]
