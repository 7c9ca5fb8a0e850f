// vite.config.ts -- builds the dashboard into dist/, which the streamer serves
// at / (mount streamer.web_root). `npm run dev` proxies /stream to a local
// streamer on :7071 so the page can be worked on with hot reload.
import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'

export default defineConfig({
  plugins: [vue()],
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: false,
  },
  server: {
    proxy: {
      '/stream': { target: 'ws://127.0.0.1:7071', ws: true },
    },
  },
})
