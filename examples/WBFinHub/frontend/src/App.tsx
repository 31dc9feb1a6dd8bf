import { useEffect, useState } from 'react'
import { CartesianGrid, Line, LineChart, ResponsiveContainer, Tooltip, XAxis, YAxis } from 'recharts'

type Health = { status: string; hub: string; version: string }
type Point = { month: string; balance: string }

export default function App() {
  const [health, setHealth] = useState<Health | null>(null)
  const [points, setPoints] = useState<Point[]>([])

  useEffect(() => {
    fetch('/health')
      .then((r) => r.json() as Promise<Health>)
      .then(setHealth)
      .catch(() => setHealth(null))
    fetch('/api/forecast?months=12')
      .then((r) => r.json() as Promise<{ points: Point[] }>)
      .then((d) => setPoints(d.points))
      .catch(() => setPoints([]))
  }, [])

  const data = points.map((p) => ({ month: p.month.slice(0, 7), balance: Number(p.balance) }))
  return (
    <main>
      <h1>WBFinHub</h1>
      <p className="status">{health ? `${health.hub} ${health.version}: ${health.status}` : 'checking...'}</p>
      <h2>Cash forecast</h2>
      <div style={{ width: '100%', height: 280 }}>
        <ResponsiveContainer>
          <LineChart data={data}>
            <CartesianGrid strokeDasharray="3 3" />
            <XAxis dataKey="month" />
            <YAxis />
            <Tooltip />
            <Line type="monotone" dataKey="balance" stroke="#8a4b08" />
          </LineChart>
        </ResponsiveContainer>
      </div>
    </main>
  )
}
