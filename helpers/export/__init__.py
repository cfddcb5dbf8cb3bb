"""Exporting a fine-tuned model: merged checkpoint, GGUF (llama.cpp, Ollama), ONNX (onnxruntime).

One module per exit: ``merge`` (adapter folded into the weights), ``gguf`` (the file
llama.cpp and Ollama read, plus an Ollama Modelfile), ``onnx`` (a graph with a KV cache
for onnxruntime, and its 8-bit version).
"""
