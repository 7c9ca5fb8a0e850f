// theme.ts -- light or dark, shared by every view: ?theme=dark|light wins,
// then the last choice (localStorage), then the system preference.
import { ref, watch } from 'vue'

const params = new URLSearchParams(location.search)
const stored = localStorage.getItem('agent-obs-theme')
const prefersDark = window.matchMedia?.('(prefers-color-scheme: dark)').matches ?? false

export const dark = ref(params.get('theme') ? params.get('theme') === 'dark' : stored ? stored === 'dark' : prefersDark)

watch(dark, (d) => {
  document.documentElement.dataset.theme = d ? 'dark' : 'light'
  localStorage.setItem('agent-obs-theme', d ? 'dark' : 'light')
}, { immediate: true })
