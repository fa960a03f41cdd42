export const AGENT_VERSION = '0.1.0';
export const ONNXRUNTIME_WEB_RANGE = '>=1.30.0 <2.0.0';
