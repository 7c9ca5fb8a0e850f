// main.ts -- the dashboard's entry: mount App (App.vue picks the view; views/LiveView.vue is where to start reading).
import { createApp } from 'vue'
import App from './App.vue'
import './style.css'

createApp(App).mount('#app')
