// Shared by the llama.cpp interop scripts: loads node-llama-cpp's prebuilt CPU binaries
// (never builds, never downloads, never touches a GPU) with llama.cpp's log on stderr.
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

export async function loadLlama() {
  return getLlama({
    gpu: false,
    build: "never",           // a missing binary is an error, not a source build
    usePrebuiltBinaries: true,
    skipDownload: true,       // no network
    progressLogs: false,
    maxThreads: 1,            // 2-core machines: more threads only adds contention
    logLevel: LlamaLogLevel.warn,
    // llama.cpp's own messages (e.g. a missing metadata key or a bad tensor) go to stderr,
    // so a failing load explains itself.
    logger: (level, message) => process.stderr.write(`[llama.cpp ${level}] ${message.replace(/\n$/, "")}\n`),
  });
}

export async function loadModel(llama, modelPath) {
  return llama.loadModel({
    modelPath,
    gpuLayers: 0,
    useMmap: true,
    checkTensors: true,  // llama.cpp validates every tensor's data (NaN/Inf in scales, etc.)
  });
}

export function fail(message) {
  process.stderr.write(`error: ${message}\n`);
  process.exit(1);
}

export async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}

// llama.cpp's log reaches JS asynchronously (through the addon's thread-safe callback); give it a
// moment so each model's messages land before the next model's "--- model:" marker.
export function flushLog() {
  return new Promise((resolve) => setTimeout(resolve, 20));
}
