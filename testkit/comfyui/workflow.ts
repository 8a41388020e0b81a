// A text-to-image workflow in ComfyUI's API format (what "Save (API Format)" exports): checkpoint → LoRA loaders →
// prompts → empty latent → KSampler → VAE decode → SaveImage. `lora_name` holds the job's LoRA reference (a user
// LoRA's flat_file_id or a shared LoRA's filename); the agent rewrites it to the link it makes for the run.
export interface ExampleWorkflowOptions {
  loras?: string[];
  prompt?: string;
  seed?: number;
  steps?: number;
  width?: number;
  height?: number;
  batch?: number;
  prefix?: string;
}

export function exampleWorkflow(o: ExampleWorkflowOptions = {}): Record<string, { class_type: string; inputs: Record<string, unknown> }> {
  const wf: Record<string, { class_type: string; inputs: Record<string, unknown> }> = {
    '4': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'sd_xl_base_1.0.safetensors' } },
  };
  let model: [string, number] = ['4', 0];
  let clip: [string, number] = ['4', 1];
  (o.loras ?? []).forEach((lora, i) => {
    const id = String(20 + i);
    wf[id] = { class_type: 'LoraLoader', inputs: { model, clip, lora_name: lora, strength_model: 0.8, strength_clip: 0.8 } };
    model = [id, 0];
    clip = [id, 1];
  });
  wf['6'] = { class_type: 'CLIPTextEncode', inputs: { text: o.prompt ?? 'a lighthouse at dusk, watercolor', clip } };
  wf['7'] = { class_type: 'CLIPTextEncode', inputs: { text: 'blurry, low quality', clip } };
  wf['5'] = { class_type: 'EmptyLatentImage', inputs: { width: o.width ?? 64, height: o.height ?? 64, batch_size: o.batch ?? 1 } };
  wf['3'] = {
    class_type: 'KSampler',
    inputs: {
      model,
      seed: o.seed ?? 42,
      steps: o.steps ?? 8,
      cfg: 7,
      sampler_name: 'euler',
      scheduler: 'normal',
      positive: ['6', 0],
      negative: ['7', 0],
      latent_image: ['5', 0],
      denoise: 1,
    },
  };
  wf['8'] = { class_type: 'VAEDecode', inputs: { samples: ['3', 0], vae: ['4', 2] } };
  wf['9'] = { class_type: 'SaveImage', inputs: { images: ['8', 0], filename_prefix: o.prefix ?? 'lora-router' } };
  return wf;
}
