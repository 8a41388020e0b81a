// One Chart.js canvas as a Preact component. Only the controllers and scales used here are registered, which keeps
// the bundle small (Chart.js is tree-shakeable). Each chart gets a text alternative for screen readers.
import {
  ArcElement,
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  DoughnutController,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
  type ChartConfiguration,
} from 'chart.js';
import { useEffect, useRef } from 'preact/hooks';

Chart.register(ArcElement, BarController, BarElement, CategoryScale, DoughnutController, Legend, LinearScale, LineController, LineElement, PointElement, Tooltip);
Chart.defaults.font.family = 'system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
Chart.defaults.animation = false; // live data redraws often; no motion, and screenshots are stable

export const PALETTE = ['#2563eb', '#16a34a', '#dc2626', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#4b5563'];

export function ChartView({ config, label, summary }: { config: ChartConfiguration; label: string; summary: string }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const chart = useRef<Chart | null>(null);
  useEffect(() => {
    if (!canvas.current) return;
    if (chart.current && (chart.current.config as { type?: string }).type === config.type) {
      chart.current.data = config.data;
      chart.current.update();
    } else {
      chart.current?.destroy();
      chart.current = new Chart(canvas.current, { ...config, options: { responsive: true, maintainAspectRatio: false, ...config.options } });
    }
  }, [config]);
  useEffect(() => () => chart.current?.destroy(), []);
  return (
    <figure class="chart">
      <figcaption>{label}</figcaption>
      <div class="chart-box">
        <canvas ref={canvas} role="img" aria-label={`${label}: ${summary}`} />
      </div>
    </figure>
  );
}
