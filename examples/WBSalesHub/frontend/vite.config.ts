import { defineConfig } from 'vite'
import react from '@vitejs/plugin-react'

// The back end serves dist/ at / and the API under /api; `vite` (dev) proxies to it.
export default defineConfig({
  plugins: [react()],
  server: {
    proxy: {
      '/api': `http://127.0.0.1:${process.env.PORT ?? 4090}`,
      '/health': `http://127.0.0.1:${process.env.PORT ?? 4090}`,
    },
  },
})
