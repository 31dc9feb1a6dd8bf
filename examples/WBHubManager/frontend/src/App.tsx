import { useQuery } from '@tanstack/react-query'

type Health = { status: string; hub: string; version: string }
type Hub = { id: string; title: string; path: string }

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url)
  if (!res.ok) throw new Error(`${url}: ${res.status}`)
  return res.json() as Promise<T>
}

export default function App() {
  const health = useQuery({ queryKey: ['health'], queryFn: () => getJson<Health>('/health') })
  const hubs = useQuery({ queryKey: ['hubs'], queryFn: () => getJson<{ hubs: Hub[] }>('/api/hubs') })

  return (
    <main>
      <h1>WBHubManager</h1>
      <p className="status">
        {health.data ? `${health.data.hub} ${health.data.version}: ${health.data.status}` : 'checking...'}
      </p>
      <ul>
        {hubs.data?.hubs.map((h) => (
          <li key={h.id}>
            <a href={h.path}>{h.title}</a>
          </li>
        ))}
      </ul>
    </main>
  )
}
