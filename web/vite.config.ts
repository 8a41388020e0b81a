// The web app's build: Preact + TypeScript through Vite's own Oxc JSX transform (no Babel), output to dist/web,
// which the Function App serves at /api/app/ (functions/triggers/webApp.ts).
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/api/app/',
  publicDir: false,
  logLevel: 'warn',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: fileURLToPath(new URL('../dist/web', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: false,
    reportCompressedSize: false,
    chunkSizeWarningLimit: 400,
    rolldownOptions: { checks: { pluginTimings: false } },
  },
  server: {
    // `npx vite --config web/vite.config.ts` during UI work: the API comes from a running `npm start`.
    // The app itself (/api/app/…) comes from Vite, except its config.json; everything else under /api is the API.
    proxy: {
      '^/api/(?!app/)|^/api/app/config\\.json$': { target: process.env.LORA_ROUTER_API ?? 'http://127.0.0.1:7071', changeOrigin: false },
    },
  },
});
