"""Seeing where a pipeline's time goes: in-graph stamps and spans (tracing, span log, a
function's own calls), the timelines made of them, and tf.data's own runtime model."""
